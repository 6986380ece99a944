//! What every non-admin request goes through: identification of the caller, the request log,
//! latency, rate limiting and injected faults.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use crate::render::errors;
use crate::{oauth, platform, Bucket, FaultKind, LogEntry, Sim, SimState};

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .merge(oauth::routes())
        .route("/platform", any(platform::dispatch))
        .route("/platform/", any(platform::dispatch))
        .route("/platform/{*rest}", any(platform::dispatch))
        .route("/presigned/{token}", get(platform::presigned))
        .route(
            "/connections/{client}/select-organizations",
            get(platform::connections_page).post(platform::connections_submit),
        )
        .route(
            "/connections/{client}/connections-dialog",
            get(platform::connections_page).post(platform::connections_submit),
        )
        .layer(axum::middleware::from_fn_with_state(sim.clone(), pipeline))
        .merge(crate::admin::routes())
        .with_state(sim)
}

/// Who is calling, as far as the request tells.
struct Caller {
    client_key: Option<String>,
    user: Option<String>,
}

fn identify(state: &SimState, request: &Request) -> Caller {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        if let Some(grant) = state.access_tokens.get(token.trim()) {
            return Caller {
                client_key: Some(grant.grant.client_key.clone()),
                user: Some(grant.grant.user.clone()),
            };
        }
    }
    if let Some((client, _)) = oauth::basic_auth(headers) {
        return Caller {
            client_key: Some(client),
            user: None,
        };
    }
    Caller {
        client_key: None,
        user: None,
    }
}

/// The organization a platform path concerns, when it names one directly or indirectly.
fn org_of_path(state: &SimState, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/platform/")?;
    let mut segs = rest.split('/').map(|s| s.split(';').next().unwrap_or(s));
    match (segs.next()?, segs.next()) {
        ("organizations", Some(org)) => Some(org.to_string()),
        ("fieldOperations" | "fieldOps", Some(op)) => {
            state.world.find_operation(op).map(|(loc, _)| loc.org)
        }
        ("files", Some(file)) => state.world.find_file(file).map(|(org, _)| org),
        _ => None,
    }
}

/// Takes a token from the caller's bucket; `Err(wait)` when it is empty.
fn take_token(state: &mut SimState, key: &str, rate: f64) -> Result<(), Duration> {
    let now = Instant::now();
    let bucket = state.buckets.entry(key.to_string()).or_insert(Bucket {
        tokens: rate.max(1.0),
        last: now,
    });
    let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
    bucket.tokens = (bucket.tokens + refill).min(rate.max(1.0));
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

enum Verdict {
    Pass,
    Answer(Response),
}

async fn pipeline(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let at_ms = sim.elapsed_ms();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let full_path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let headers = request.headers();
    let signature_sent = headers
        .get(platform::SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && v.trim() != "nil");
    let authorization_sent = headers.contains_key(header::AUTHORIZATION);

    let (caller, delay, verdict, drop_response) = {
        let mut drop_response = false;
        let mut state = sim.state();
        let caller = identify(&state, &request);
        let org = org_of_path(&state, &path);
        let mut delay = Duration::from_millis(state.settings.latency_ms);
        let mut verdict = Verdict::Pass;
        let is_collection = method == "GET" && platform::is_collection_path(&path);
        let mut spent = Vec::new();
        for fault in state.faults.iter_mut() {
            let s = &fault.spec;
            let matches = s
                .client_key
                .as_ref()
                .is_none_or(|k| caller.client_key.as_ref() == Some(k))
                && s.user
                    .as_ref()
                    .is_none_or(|u| caller.user.as_ref() == Some(u))
                && s.org_id.as_ref().is_none_or(|o| org.as_ref() == Some(o))
                && s.path_contains
                    .as_ref()
                    .is_none_or(|p| full_path.contains(p.as_str()))
                && s.method
                    .as_ref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&method))
                && (!matches!(s.kind, FaultKind::EmptyList) || is_collection);
            if !matches {
                continue;
            }
            if let FaultKind::Latency { ms } = s.kind {
                delay += Duration::from_millis(ms);
            } else if matches!(s.kind, FaultKind::DropResponse) {
                if drop_response {
                    continue;
                }
                drop_response = true;
            } else if matches!(verdict, Verdict::Pass) {
                verdict = Verdict::Answer(fault_response(&sim, &s.kind, &path));
            } else {
                continue;
            }
            fault.fired += 1;
            if s.times.is_some_and(|t| fault.fired >= t) {
                spent.push(fault.id);
            }
        }
        state.faults.retain(|f| !spent.contains(&f.id));
        if matches!(verdict, Verdict::Pass) {
            if let (Some(rate), Some(key)) =
                (state.settings.rate_limit_per_sec, caller.client_key.clone())
            {
                if let Err(wait) = take_token(&mut state, &key, rate) {
                    verdict = Verdict::Answer(rate_limited(Some(
                        wait.as_secs_f64().ceil().max(1.0) as u64,
                    )));
                }
            }
        }
        (caller, delay, verdict, drop_response)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = match verdict {
        Verdict::Answer(response) => response,
        Verdict::Pass => next.run(request).await,
    };
    if drop_response {
        // The request was handled (a refresh token may have rotated); the answer never arrives.
        let (parts, _) = response.into_parts();
        let cut: Vec<Result<Bytes, std::io::Error>> = vec![Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected: response lost",
        ))];
        response = Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(cut)));
    }
    if path.starts_with("/platform") {
        let headers = response.headers_mut();
        headers.insert(
            "x-deere-handling-server",
            HeaderValue::from_static("deere-sim"),
        );
        if let Ok(v) = HeaderValue::from_str(&started.elapsed().as_millis().to_string()) {
            headers.insert("x-deere-elapsed-ms", v);
        }
    }
    let entry = LogEntry {
        id: 0,
        method,
        path: full_path,
        status: response.status().as_u16(),
        client_key: caller.client_key,
        user: caller.user,
        signature_sent,
        authorization_sent,
        at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let mut state = sim.state();
    state.log_seq += 1;
    let id = state.log_seq;
    state.log.push(LogEntry { id, ..entry });
    response
}

pub(crate) fn rate_limited(retry_after: Option<u64>) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        platform::deere_json(&json!({
            "@type": "Errors",
            "errors": [{"@type": "Error", "guid": uuid::Uuid::new_v4().to_string(),
                        "message": "Too Many Requests", "code": "429"}],
            "otherAttributes": {}
        })),
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn fault_response(sim: &Sim, kind: &FaultKind, path: &str) -> Response {
    let error = |status: StatusCode, message: &str| {
        (status, platform::deere_json(&errors(message))).into_response()
    };
    match kind {
        FaultKind::Status {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = error(
                status,
                status.canonical_reason().unwrap_or("Injected fault"),
            );
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            response
        }
        FaultKind::RateLimit { retry_after } => rate_limited(*retry_after),
        FaultKind::ConnectionReset => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(b"{\"links\":[],\"values\":[")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ];
            let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(platform::DEERE_JSON_UTF8),
            );
            response
        }
        FaultKind::RequiredCustomerAction => {
            let org = path
                .strip_prefix("/platform/organizations/")
                .and_then(|r| r.split(['/', ';']).next())
                .unwrap_or("0")
                .to_string();
            let mut response = error(
                StatusCode::FORBIDDEN,
                "Requested Org is in a restricted state.",
            );
            let h = response.headers_mut();
            h.insert(
                "x-deere-warning",
                HeaderValue::from_static("Requested Org is in a restricted state."),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "https://teammanager.deere.com/organizations/{org}/terms"
            )) {
                h.insert("x-deere-terms-location", v);
            }
            response
        }
        FaultKind::MissingScope => error(
            StatusCode::FORBIDDEN,
            "The client does not have a proper access for this API",
        ),
        FaultKind::Unlicensed => error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        FaultKind::EmptyList => platform::deere_json(&json!({
            "links": [{"rel": "self", "uri": format!("{}{}", sim.root_url(), path)}],
            "total": 0, "values": []
        }))
        .into_response(),
        FaultKind::InvalidGrant => oauth::invalid_grant(),
        FaultKind::InvalidClient => oauth::invalid_client(),
        FaultKind::Latency { .. } | FaultKind::DropResponse => Json(json!({})).into_response(),
    }
}
