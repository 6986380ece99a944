//! The platform API: JSON resources, collections paged by `nextPage` links, `x-deere-signature`,
//! ranged file downloads, the asynchronous shapefile export, and event subscriptions.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use url::Url;

use crate::error::{ApiErrors, DeereError, ForbiddenKind, Result};
use crate::http::{retry_after, RetryPolicy};
use crate::models::{
    ApiCatalog, CollectionPage, EventSubscription, EventType, HasLinks, NewEventSubscription,
    Organization,
};
use crate::oauth::AccessToken;
use crate::observe::{observe, Observer};
use crate::pace::{Paced, SharedPacer};

/// John Deere's media type for JSON resources.
pub const DEERE_JSON: &str = "application/vnd.deere.axiom.v3+json";
/// A measurement's map image: base64 PNG, legend and extent in JSON.
pub const DEERE_IMAGE_JSON: &str = "application/vnd.deere.axiom.v3.image+json";
/// Request and response header carrying the change signature of a collection.
pub const SIGNATURE_HEADER: &str = "x-deere-signature";

/// Which of John Deere's API hosts a credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Sandbox-phase apps (`sandboxapi.deere.com`); Leaf calls it STAGE.
    Stage,
    /// Production-approved apps (`partnerapi.deere.com`).
    Production,
}

impl Environment {
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Stage => "https://sandboxapi.deere.com/platform",
            Self::Production => "https://partnerapi.deere.com/platform",
        }
    }
}

/// A platform API client for one base URL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
    observer: Option<Observed>,
    pacer: Paced,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// Wrapper so `ApiClient` can derive `Debug`.
#[derive(Clone)]
struct Observed(Observer);

/// Result of a conditional collection read.
// One value per collection read, moved once: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Listing<T> {
    /// 304: nothing changed since the signature we sent.
    NotModified,
    /// 200: the pages (a delta when a signature was sent, the full list otherwise).
    Changed(Pager<T>),
}

/// John Deere's largest page of a classic (matrix-parameter) collection.
pub const MAX_PAGE_SIZE: usize = 100;

/// `url` asking for John Deere's largest page (`;count=100`, a matrix parameter at the end of
/// the path, before any query), unless it already says how it pages: the default page is ten
/// items, so a collection of a hundred costs one request instead of ten. `nextPage` links keep
/// the count.
pub fn largest_page(url: &Url) -> Url {
    let mut paged = url.clone();
    if !url.path().contains(';') {
        paged.set_path(&format!("{};count={MAX_PAGE_SIZE}", url.path()));
    }
    paged
}

/// Walks a collection by its `nextPage` links.
pub struct Pager<T> {
    client: ApiClient,
    token: AccessToken,
    signature_sent: Option<String>,
    new_signature: Option<String>,
    buffered: Option<CollectionPage<T>>,
    next: Option<Url>,
    pages_read: u32,
}

/// Outcome of a file download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// From `Content-Disposition`, when the server sent one.
    pub file_name: Option<String>,
    pub bytes_written: u64,
    /// Requests made (more than one when the file came in ranged chunks).
    pub requests: u32,
}

/// Polling schedule for the asynchronous shapefile export (202 until ready).
#[derive(Debug, Clone)]
pub struct ExportPolling {
    /// First wait; doubles each poll (John Deere suggests 5 s).
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Give up after this many 202 answers.
    pub max_polls: u32,
}

impl Default for ExportPolling {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(120),
            max_polls: 30,
        }
    }
}

/// A measurement's map image (`measurementTypes/{name}` as `image+json`).
#[derive(Debug, Clone)]
pub struct MapImage {
    /// The decoded PNG.
    pub png: Vec<u8>,
    /// The legend and the extent as John Deere sends them.
    pub legend: serde_json::Value,
    pub extent: serde_json::Value,
}

/// A ready shapefile export: where to fetch it, without our token.
#[derive(Debug, Clone)]
pub struct ShapefileExport {
    pub presigned_url: Url,
    /// 202 answers seen before the redirect.
    pub polls: u32,
}

impl ApiClient {
    pub fn new(http: reqwest::Client, base_url: Url) -> Self {
        Self {
            http,
            base: base_url,
            retry: RetryPolicy::default(),
            observer: None,
            pacer: Paced::default(),
        }
    }

    /// Draws every request (retries too) from `pacer`'s budget.
    pub fn with_pacer(mut self, pacer: SharedPacer) -> Self {
        self.pacer = Paced(Some(pacer));
        self
    }

    /// Sees every non-2xx response (see [`crate::observe`]).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(Observed(observer));
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// An entry point below the base URL (the only URLs we build ourselves).
    pub fn endpoint(&self, path: &str) -> Result<Url> {
        let base = self.base.as_str().trim_end_matches('/');
        let path = path.trim_start_matches('/');
        Url::parse(&format!("{base}/{path}"))
            .map_err(|e| DeereError::InvalidUrl(format!("{path}: {e}")))
    }

    /// `GET /` — the API catalog.
    pub async fn catalog(&self, token: &AccessToken) -> Result<ApiCatalog> {
        let url = self.endpoint("")?;
        self.get_json(token, &url).await
    }

    /// `GET /organizations`, all pages.
    pub async fn organizations(&self, token: &AccessToken) -> Result<Vec<Organization>> {
        let url = self.endpoint("organizations")?;
        self.collect_all(token, &largest_page(&url)).await
    }

    /// `GET /organizations`, every page, with the collection's change signature (when John
    /// Deere gives one), so that a later read of it asks only for what changed since.
    pub async fn organizations_signed(
        &self,
        token: &AccessToken,
    ) -> Result<(Vec<Organization>, Option<String>)> {
        let url = self.endpoint("organizations")?;
        match self
            .list::<Organization>(token, &largest_page(&url), None)
            .await?
        {
            Listing::NotModified => Ok((Vec::new(), None)),
            Listing::Changed(mut pager) => {
                let signature = pager.signature().map(str::to_string);
                let mut orgs = Vec::new();
                while let Some(page) = pager.next_page().await? {
                    orgs.extend(page.values);
                }
                Ok((orgs, signature))
            }
        }
    }

    /// GET a single resource.
    pub async fn get_json<T: DeserializeOwned>(&self, token: &AccessToken, url: &Url) -> Result<T> {
        let response = self
            .send(Method::GET, url, token, |r| r.header(ACCEPT, DEERE_JSON))
            .await?;
        parse_json(response).await
    }

    /// Parses a link found in a response and checks it points at our API host.
    pub fn link_url(&self, uri: &str) -> Result<Url> {
        let url = Url::parse(uri).map_err(|e| DeereError::InvalidUrl(format!("{uri}: {e}")))?;
        self.check_host(&url)?;
        Ok(url)
    }

    /// Reads a collection. With `signature`, a 304 comes back as [`Listing::NotModified`] and a 200
    /// holds only what changed (deleted items carry a `delete` link, see [`HasLinks::is_deleted`]).
    pub async fn list<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        url: &Url,
        signature: Option<&str>,
    ) -> Result<Listing<T>> {
        let sig = signature.map(str::to_string);
        let response = self
            .send(Method::GET, url, token, |r| {
                with_signature(r, sig.as_deref())
            })
            .await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Listing::NotModified);
        }
        let new_signature = header_string(response.headers(), SIGNATURE_HEADER);
        let page: CollectionPage<T> = parse_json(response).await?;
        let next = self.next_link(&page)?;
        Ok(Listing::Changed(Pager {
            client: self.clone(),
            token: token.clone(),
            signature_sent: sig,
            new_signature,
            buffered: Some(page),
            next,
            pages_read: 1,
        }))
    }

    /// All items of a collection, every page.
    pub async fn collect_all<T: DeserializeOwned>(
        &self,
        token: &AccessToken,
        url: &Url,
    ) -> Result<Vec<T>> {
        match self.list(token, url, None).await? {
            Listing::NotModified => Err(DeereError::InvalidResponse(
                "304 to a request without a signature".into(),
            )),
            Listing::Changed(pager) => pager.collect_values().await,
        }
    }

    fn next_link<T>(&self, page: &CollectionPage<T>) -> Result<Option<Url>> {
        page.link("nextPage")
            .map(|uri| self.link_url(uri))
            .transpose()
    }

    /// Downloads a file's bytes into `out`, in `Range` chunks of `chunk_size` bytes so a large
    /// file never sits in memory whole and a failed chunk is retried alone.
    pub async fn download_file<W: AsyncWrite + Unpin>(
        &self,
        token: &AccessToken,
        file_url: &Url,
        chunk_size: u64,
        out: &mut W,
    ) -> Result<Download> {
        let chunk_size = chunk_size.max(1);
        let mut download = Download {
            file_name: None,
            bytes_written: 0,
            requests: 0,
        };
        loop {
            let start = download.bytes_written;
            let range = format!("bytes={}-{}", start, start + chunk_size - 1);
            let response = self
                .send(Method::GET, file_url, token, |r| {
                    r.header(ACCEPT, "application/zip")
                        .header(RANGE, range.as_str())
                })
                .await?;
            download.requests += 1;
            if download.file_name.is_none() {
                download.file_name = content_disposition_filename(response.headers());
            }
            let status = response.status();
            let total = match status {
                StatusCode::PARTIAL_CONTENT => content_range_total(response.headers()),
                // The server ignored the range and sent the whole file.
                StatusCode::OK if start == 0 => None,
                _ => {
                    return Err(DeereError::InvalidResponse(format!(
                        "unexpected {status} for a ranged download"
                    )))
                }
            };
            let written = write_body(response, out).await?;
            download.bytes_written += written;
            let done = match total {
                None => true,
                Some(total) => download.bytes_written >= total || written == 0,
            };
            if done {
                out.flush().await?;
                return Ok(download);
            }
        }
    }

    /// Requests the shapefile of a field operation (`shapeFileAsync` link, `/fieldOps/{id}`):
    /// polls while John Deere answers 202, returns the pre-signed URL of the 307. A 406 means no
    /// shapefile can be made for this operation (e.g. tillage): [`DeereError::NotAcceptable`].
    /// `uom_system` (`METRIC`, `ENGLISH`, `MIXED`) goes out as `Accept-UOM-System`; without it
    /// John Deere uses the organization's preference.
    pub async fn request_shapefile(
        &self,
        token: &AccessToken,
        url: &Url,
        uom_system: Option<&str>,
        polling: &ExportPolling,
    ) -> Result<ShapefileExport> {
        let mut polls = 0;
        loop {
            let response = self
                .send(Method::GET, url, token, |r| {
                    let r = r.header(ACCEPT, DEERE_JSON);
                    match uom_system {
                        Some(system) => r.header("Accept-UOM-System", system),
                        None => r,
                    }
                })
                .await?;
            match response.status() {
                StatusCode::ACCEPTED => {
                    polls += 1;
                    if polls >= polling.max_polls {
                        return Err(DeereError::Timeout(format!(
                            "shapefile still generating after {polls} polls"
                        )));
                    }
                    let delay = polling
                        .initial_delay
                        .saturating_mul(2u32.saturating_pow(polls - 1))
                        .min(polling.max_delay);
                    tokio::time::sleep(delay).await;
                }
                status if status.is_redirection() => {
                    let location =
                        header_string(response.headers(), "location").ok_or_else(|| {
                            DeereError::InvalidResponse(format!("{status} without Location"))
                        })?;
                    let presigned_url = Url::parse(&location)
                        .map_err(|e| DeereError::InvalidResponse(format!("Location: {e}")))?;
                    return Ok(ShapefileExport {
                        presigned_url,
                        polls,
                    });
                }
                status => {
                    return Err(DeereError::InvalidResponse(format!(
                        "unexpected {status} from the shapefile export"
                    )))
                }
            }
        }
    }

    /// `GET` of a measurement (`measurementTypes/{name}` link) as its map image: a base64 PNG
    /// (`value`), `legend` and `extent`.
    pub async fn measurement_image(&self, token: &AccessToken, url: &Url) -> Result<MapImage> {
        use base64::Engine;
        let response = self
            .send(Method::GET, url, token, |r| {
                r.header(ACCEPT, DEERE_IMAGE_JSON)
            })
            .await?;
        let body: serde_json::Value = parse_json(response).await?;
        let encoded = body["value"]
            .as_str()
            .ok_or_else(|| DeereError::InvalidResponse("map image without a value".into()))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| DeereError::InvalidResponse(format!("map image value: {e}")))?;
        Ok(MapImage {
            png,
            legend: body["legend"].clone(),
            extent: body["extent"].clone(),
        })
    }

    /// Fetches a pre-signed URL. It gets no Authorization header: such URLs carry their own
    /// signature, reject a bearer token, and may live on another host.
    pub async fn download_presigned<W: AsyncWrite + Unpin>(
        &self,
        url: &Url,
        out: &mut W,
    ) -> Result<Download> {
        let started = std::time::Instant::now();
        let sent = self.http.get(url.clone()).send().await;
        crate::observe::record_request(
            "presigned",
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let response = check_status(sent.map_err(DeereError::transport)?, None, "GET", url).await?;
        let file_name = content_disposition_filename(response.headers());
        let bytes_written = write_body(response, out).await?;
        out.flush().await?;
        Ok(Download {
            file_name,
            bytes_written,
            requests: 1,
        })
    }

    /// `POST /organizations/{orgId}/fields` with the field's name; John Deere answers 201 with the
    /// new field's URL in `Location`, which this returns.
    pub async fn create_field(&self, token: &AccessToken, org_id: &str, name: &str) -> Result<Url> {
        let url = self.endpoint(&format!("organizations/{org_id}/fields"))?;
        let body = serde_json::json!({"name": name, "archived": false});
        let response = self.send_json(Method::POST, &url, token, &body).await?;
        created_location(&response)
    }

    /// `POST {field}/boundaries`: the field's boundary; returns the new boundary's URL.
    pub async fn create_boundary(
        &self,
        token: &AccessToken,
        field_url: &Url,
        boundary: &crate::models::NewBoundary,
    ) -> Result<Url> {
        let url = Url::parse(&format!(
            "{}/boundaries",
            field_url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| DeereError::InvalidUrl(e.to_string()))?;
        let response = self.send_json(Method::POST, &url, token, boundary).await?;
        created_location(&response)
    }

    /// `POST /eventSubscriptions`.
    pub async fn create_event_subscription(
        &self,
        token: &AccessToken,
        subscription: &NewEventSubscription,
    ) -> Result<EventSubscription> {
        let url = self.endpoint("eventSubscriptions")?;
        let response = self
            .send_json(Method::POST, &url, token, subscription)
            .await?;
        parse_json(response).await
    }

    /// `GET /eventSubscriptionEventTypes`: the event types this app may subscribe to.
    pub async fn event_types(&self, token: &AccessToken) -> Result<Vec<EventType>> {
        let url = self.endpoint("eventSubscriptionEventTypes")?;
        self.collect_all(token, &url).await
    }

    /// `GET /eventSubscriptions`, all pages.
    pub async fn event_subscriptions(&self, token: &AccessToken) -> Result<Vec<EventSubscription>> {
        let url = self.endpoint("eventSubscriptions")?;
        self.collect_all(token, &url).await
    }

    /// `PUT /eventSubscriptions/{id}` (target, status, display name, token).
    pub async fn update_event_subscription(
        &self,
        token: &AccessToken,
        subscription_url: &Url,
        update: &NewEventSubscription,
    ) -> Result<()> {
        self.send_json(Method::PUT, subscription_url, token, update)
            .await
            .map(drop)
    }

    /// `DELETE /eventSubscriptions/{id}`.
    pub async fn delete_event_subscription(
        &self,
        token: &AccessToken,
        subscription_url: &Url,
    ) -> Result<()> {
        self.send(Method::DELETE, subscription_url, token, |r| {
            r.header(ACCEPT, DEERE_JSON)
        })
        .await
        .map(drop)
    }

    async fn send_json<B: Serialize>(
        &self,
        method: Method,
        url: &Url,
        token: &AccessToken,
        body: &B,
    ) -> Result<reqwest::Response> {
        let body = serde_json::to_vec(body)
            .map_err(|e| DeereError::InvalidResponse(format!("cannot encode request: {e}")))?;
        self.send(method, url, token, |r| {
            r.header(ACCEPT, DEERE_JSON)
                .header(CONTENT_TYPE, DEERE_JSON)
                .body(body.clone())
        })
        .await
    }

    fn check_host(&self, url: &Url) -> Result<()> {
        if url.origin() == self.base.origin() {
            Ok(())
        } else {
            Err(DeereError::InvalidUrl(format!(
                "{} is not the configured API host; refusing to send the bearer token there",
                url.origin().ascii_serialization()
            )))
        }
    }

    /// One request with retries. Only requests to the configured API host carry the token.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        token: &AccessToken,
        decorate: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        self.check_host(url)?;
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                DeereError::InvalidUrl("access token is not a valid header value".into())
            })?;
        bearer.set_sensitive(true);
        let mut retry = 0;
        loop {
            self.pacer.acquire().await;
            let request = decorate(
                self.http
                    .request(method.clone(), url.clone())
                    .header(AUTHORIZATION, bearer.clone()),
            );
            let observer = self.observer.as_ref().map(|o| &o.0);
            let started = std::time::Instant::now();
            let outcome = match request.send().await {
                Ok(response) => {
                    crate::observe::record_request(
                        &crate::observe::endpoint_kind(url),
                        Some(response.status().as_u16()),
                        started.elapsed(),
                    );
                    check_status(response, observer, method.as_str(), url).await
                }
                Err(err) => {
                    let kind = crate::observe::endpoint_kind(url);
                    crate::observe::record_request(&kind, None, started.elapsed());
                    Err(DeereError::transport(err))
                }
            };
            let err = match outcome {
                Ok(response) => return Ok(response),
                Err(err) => err,
            };
            self.pacer.refused(&err).await;
            match self.retry.delay_for(retry, &err) {
                Some(delay) => {
                    tracing::debug!(%method, path = url.path(), error = %err, ?delay, "retrying");
                    crate::observe::record_rate_limit_wait(&err, delay);
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                None => return Err(err),
            }
        }
    }
}

impl<T: DeserializeOwned> Pager<T> {
    /// The signature to store for the next conditional read (from the first page).
    pub fn signature(&self) -> Option<&str> {
        self.new_signature.as_deref()
    }

    pub fn pages_read(&self) -> u32 {
        self.pages_read
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<CollectionPage<T>>> {
        if let Some(page) = self.buffered.take() {
            return Ok(Some(page));
        }
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        let sig = self.signature_sent.clone();
        let response = self
            .client
            .send(Method::GET, &url, &self.token, |r| {
                with_signature(r, sig.as_deref())
            })
            .await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let page: CollectionPage<T> = parse_json(response).await?;
        self.next = self.client.next_link(&page)?;
        self.pages_read += 1;
        Ok(Some(page))
    }

    /// The pages as a stream, for callers that process page by page.
    pub fn into_stream(self) -> impl Stream<Item = Result<CollectionPage<T>>> {
        futures_util::stream::unfold(Some(self), |pager| async move {
            let mut pager = pager?;
            match pager.next_page().await {
                Ok(Some(page)) => Some((Ok(page), Some(pager))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }

    /// Every item on every page.
    pub async fn collect_values(mut self) -> Result<Vec<T>> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page.values);
        }
        Ok(all)
    }
}

fn with_signature(
    request: reqwest::RequestBuilder,
    signature: Option<&str>,
) -> reqwest::RequestBuilder {
    // A blank signature asks John Deere to start tracking changes for this URL.
    request
        .header(ACCEPT, DEERE_JSON)
        .header(SIGNATURE_HEADER, signature.unwrap_or(""))
}

/// Maps a non-success status to a typed error (2xx, 3xx pass through) and shows it to the observer.
async fn check_status(
    response: reqwest::Response,
    observer: Option<&Observer>,
    method: &str,
    url: &Url,
) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    observe(
        observer,
        method,
        url,
        Some(status.as_u16()),
        Some(&headers),
        &body,
        None,
    );
    Err(status_error(status, &headers, &body))
}

fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> DeereError {
    let errors = ApiErrors::parse(body);
    let message = errors.message_or(status.canonical_reason().unwrap_or("error"));
    match status.as_u16() {
        401 => DeereError::Unauthorized { message },
        403 => match header_string(headers, "x-deere-warning") {
            Some(warning) => DeereError::RequiredCustomerAction {
                warning,
                terms_location: header_string(headers, "x-deere-terms-location"),
            },
            None => {
                let kind = if message.to_ascii_lowercase().contains("proper access") {
                    ForbiddenKind::MissingScope
                } else {
                    ForbiddenKind::AccessDenied
                };
                DeereError::Forbidden { kind, message }
            }
        },
        404 => DeereError::NotFound { message },
        406 => DeereError::NotAcceptable { message },
        429 => DeereError::RateLimited {
            retry_after: retry_after(headers),
        },
        s if s >= 500 => DeereError::server_error(s, message),
        s => DeereError::Http { status: s, message },
    }
}

async fn parse_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let bytes = response.bytes().await.map_err(DeereError::transport)?;
    serde_json::from_slice(&bytes).map_err(|e| DeereError::InvalidResponse(e.to_string()))
}

async fn write_body<W: AsyncWrite + Unpin>(
    response: reqwest::Response,
    out: &mut W,
) -> Result<u64> {
    let mut written = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(DeereError::transport)?;
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    Ok(written)
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Range: bytes 0-999/72946` → 72946.
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    header_string(headers, "content-range")?
        .rsplit('/')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// `Content-Disposition: attachment; filename="x.zip"` → `x.zip`.
/// The `Location` of a 201 (a created resource), as a URL.
fn created_location(response: &reqwest::Response) -> Result<Url> {
    let location = header_string(response.headers(), "location").ok_or_else(|| {
        DeereError::InvalidResponse(format!("{} without Location", response.status()))
    })?;
    Url::parse(&location).map_err(|e| DeereError::InvalidResponse(format!("Location: {e}")))
}

pub fn content_disposition_filename(headers: &HeaderMap) -> Option<String> {
    let value = header_string(headers, "content-disposition")?;
    value.split(';').find_map(|part| {
        let (key, val) = part.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("filename")
            .then(|| val.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_page_is_a_matrix_parameter_before_the_query() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            largest_page(&url("https://api.example/platform/organizations/1/fieldOperations?embed=measurementTypes")).as_str(),
            "https://api.example/platform/organizations/1/fieldOperations;count=100?embed=measurementTypes"
        );
        // A link that already pages (a nextPage link) is left as it is.
        let next = url("https://api.example/platform/organizations;start=10;count=10");
        assert_eq!(largest_page(&next), next);
    }

    #[test]
    fn parses_content_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-range",
            HeaderValue::from_static("bytes 0-999/72946"),
        );
        h.insert(
            "content-disposition",
            HeaderValue::from_static("attachment; filename=\"JD4600_Harvest_2024.zip\""),
        );
        assert_eq!(content_range_total(&h), Some(72946));
        assert_eq!(
            content_disposition_filename(&h).as_deref(),
            Some("JD4600_Harvest_2024.zip")
        );
    }

    #[test]
    fn maps_statuses_to_typed_errors() {
        let body = br#"{"@type":"Errors","errors":[{"@type":"Error","guid":"g","message":"Requested Org is in a restricted state."}],"otherAttributes":{}}"#;
        let mut h = HeaderMap::new();
        h.insert(
            "x-deere-warning",
            HeaderValue::from_static("Requested Org is in a restricted state."),
        );
        h.insert(
            "x-deere-terms-location",
            HeaderValue::from_static("https://teammanager.deere.com/organizations/440001/terms"),
        );
        match status_error(StatusCode::FORBIDDEN, &h, body) {
            DeereError::RequiredCustomerAction { terms_location, .. } => assert_eq!(
                terms_location.as_deref(),
                Some("https://teammanager.deere.com/organizations/440001/terms")
            ),
            other => panic!("{other:?}"),
        }
        let scope = br#"{"@type":"Errors","errors":[{"message":"The client does not have a proper access for this API"}]}"#;
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, &HeaderMap::new(), scope),
            DeereError::Forbidden {
                kind: ForbiddenKind::MissingScope,
                ..
            }
        ));
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, &HeaderMap::new(), b""),
            DeereError::Forbidden {
                kind: ForbiddenKind::AccessDenied,
                ..
            }
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b""),
            DeereError::Unauthorized { .. }
        ));
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, &HeaderMap::new(), b""),
            DeereError::NotFound { .. }
        ));
        assert!(status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"").is_transient());
    }

    #[test]
    fn refuses_to_send_token_to_another_host() {
        let client = ApiClient::new(
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:9/platform").unwrap(),
        );
        assert!(client
            .link_url("http://127.0.0.1:9/platform/organizations")
            .is_ok());
        assert!(matches!(
            client.link_url("http://evil.example/platform/organizations"),
            Err(DeereError::InvalidUrl(_))
        ));
        assert!(client.link_url("http://127.0.0.1:10/platform").is_err());
    }
}
