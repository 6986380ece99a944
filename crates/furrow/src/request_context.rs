//! The request id of the work in progress: set for an API request's handling and for a job
//! that a request queued, read where jobs are queued so that they carry it on. Job log lines
//! then name the request that caused them.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: Option<String>;
}

/// Runs `work` with `request_id` as the current request id.
pub async fn scope<F: Future>(request_id: Option<String>, work: F) -> F::Output {
    REQUEST_ID.scope(request_id, work).await
}

/// The current request id, if this work came from a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok().flatten()
}
