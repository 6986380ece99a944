//! The grower's pages: a magic link's landing page, the start of a flow, John Deere's callback
//! and the return from its connections page. Server-rendered HTML, no script, usable on a
//! phone; public (the link, the flow id and the browser cookie are what authorise each step).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::onboarding::{
    self, check_link_usable, CallbackParams, FlowError, FlowOutcome, Next, BROWSER_COOKIE,
};
use crate::store::{content_hash, MagicLinkRecord, OAuthFlowRecord};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(landing, continue_link))
        .routes(routes!(start))
        .routes(routes!(callback))
        .routes(routes!(organizations_chosen))
}

/// The browser's binding secret: the one it has, or a new one to set.
struct Browser {
    secret: String,
    is_new: bool,
}

impl Browser {
    fn from_headers(headers: &HeaderMap) -> Self {
        match cookie(headers, BROWSER_COOKIE) {
            Some(secret) => Self {
                secret,
                is_new: false,
            },
            None => Self {
                secret: onboarding::random_secret(),
                is_new: true,
            },
        }
    }

    fn hash(&self) -> String {
        content_hash(&self.secret)
    }

    /// Adds `Set-Cookie` when the browser had none. `SameSite=Lax`: sent on John Deere's
    /// top-level redirect back to the callback, never on a cross-site form post.
    fn set_on(&self, state: &AppState, response: &mut Response) {
        if !self.is_new {
            return;
        }
        let secure = if state.settings.public_url().starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let value = format!(
            "{BROWSER_COOKIE}={}; Path=/connect; Max-Age=86400; HttpOnly; SameSite=Lax{secure}",
            self.secret
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// One cookie's value from the `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty() && v.len() <= 128)
        .map(|(_, v)| v.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// How a page looks: the link's company name, logo and colour when it has them.
#[derive(Default)]
struct Look {
    company: Option<String>,
    logo: Option<String>,
    color: Option<String>,
    user_name: Option<String>,
}

impl Look {
    async fn of_link(state: &AppState, link: &MagicLinkRecord) -> Self {
        let settings: Value = serde_json::from_str(&link.settings).unwrap_or(Value::Null);
        let text = |k: &str| settings[k].as_str().map(str::to_string);
        let user_name = if settings["showLeafUserName"].as_bool() == Some(true) {
            state
                .store
                .user(&link.owner_id, &link.leaf_user_id)
                .await
                .ok()
                .flatten()
                .and_then(|u| u.name)
        } else {
            None
        };
        Self {
            company: text("companyName"),
            logo: text("companyLogo"),
            color: text("backgroundColor").filter(|c| super::onboarding::is_hex_color(c)),
            user_name,
        }
    }

    async fn of_flow(state: &AppState, flow: Option<&OAuthFlowRecord>) -> Self {
        let Some(link_id) = flow.and_then(|f| f.magic_link_id.as_deref()) else {
            return Self::default();
        };
        match state.store.magic_link(None, link_id).await {
            Ok(Some(link)) => Self::of_link(state, &link).await,
            _ => Self::default(),
        }
    }

    fn company(&self) -> String {
        self.company
            .clone()
            .unwrap_or_else(|| "An application".to_string())
    }
}

/// A whole page, with headers that keep it out of caches, frames and referrers.
fn page(status: StatusCode, look: &Look, title: &str, body: &str) -> Response {
    let accent = look.color.as_deref().unwrap_or("#367c2b");
    let logo = look
        .logo
        .as_deref()
        .map(|l| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", escape(l)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{margin:0;font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f6f3;color:#1d231c}}\
         header{{background:{accent};color:#fff;padding:14px 20px;font-weight:600}}\
         main{{max-width:34rem;margin:0 auto;padding:20px}}\
         .card{{background:#fff;border-radius:12px;padding:20px;box-shadow:0 1px 3px rgba(0,0,0,.12)}}\
         h1{{font-size:1.35rem;margin:0 0 12px}} ol,ul{{padding-left:1.3rem}} li{{margin:4px 0}}\
         .logo{{max-height:48px;max-width:160px;display:block;margin-bottom:12px}}\
         button{{width:100%;padding:14px;font-size:1.05rem;border:0;border-radius:8px;background:{accent};color:#fff;cursor:pointer}}\
         .muted{{color:#5b6559;font-size:.9rem}} .error{{border-left:4px solid #b3261e}} .ok{{border-left:4px solid #367c2b}}\
         code{{background:#eef1ec;padding:1px 4px;border-radius:4px}}\
         </style></head><body><header>{company}</header><main><div class=\"card\">{logo}{body}</div></main></body></html>",
        title = escape(title),
        company = escape(&look.company()),
    );
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn status_of(error: &FlowError) -> StatusCode {
    match error {
        FlowError::LinkNotFound | FlowError::UnknownFlow => StatusCode::NOT_FOUND,
        FlowError::LinkExpired | FlowError::LinkUsedUp | FlowError::Expired => StatusCode::GONE,
        FlowError::WrongBrowser => StatusCode::FORBIDDEN,
        FlowError::AlreadyUsed => StatusCode::CONFLICT,
        FlowError::Upstream(_) => StatusCode::BAD_GATEWAY,
        FlowError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error_page(look: &Look, error: &FlowError) -> Response {
    let body = format!(
        "<section class=\"error\" style=\"padding-left:12px\"><h1>Not connected</h1><p>{}</p>\
         <p class=\"muted\">Reference: <code>{}</code></p></section>",
        escape(&error.to_string()),
        escape(error.code()),
    );
    page(status_of(error), look, "Not connected", &body)
}

fn redirect(to: &str, status: StatusCode) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => {
            let mut response = status.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => error_page(
            &Look::default(),
            &FlowError::Internal("redirect target is not a header value".into()),
        ),
    }
}

/// What each John Deere scope lets the application do, in a grower's words.
fn describe_scope(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "ag1" => "see your fields and boundaries",
        "ag2" => "see your field operations: planting, spraying, harvest and their maps",
        "ag3" => "change fields and agronomic data",
        "files" => "read the machine files in your account",
        "eq1" => "see your machines and equipment",
        "eq2" => "change machines and equipment",
        "org1" => "see your organization's staff and partners",
        "org2" => "change your organization's staff and partners",
        "offline_access" => "keep this connection without you signing in again",
        _ => return None,
    })
}

/// A magic link's page: what the app asks for, and a button on to John Deere.
#[utoipa::path(get, path = "/connect/{link_id}", tag = "connect", security(()),
    params(("link_id" = uuid::Uuid, Path, description = "Magic link id")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn landing(
    State(state): State<AppState>,
    Path(link_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let browser = Browser::from_headers(&headers);
    let link = match uuid::Uuid::parse_str(&link_id) {
        Ok(id) => state.store.magic_link(None, &id.to_string()).await,
        Err(_) => Ok(None),
    };
    let link = match link {
        Ok(Some(link)) => link,
        Ok(None) => return error_page(&Look::default(), &FlowError::LinkNotFound),
        Err(e) => return error_page(&Look::default(), &FlowError::from(e)),
    };
    let look = Look::of_link(&state, &link).await;
    if let Err(e) = check_link_usable(link.expires_at_ms, link.usage_count, link.max_usage) {
        return error_page(&look, &e);
    }
    if let Err(e) = state.store.touch_magic_link(&link.id).await {
        tracing::warn!(link = %link.id, error = %e, "magic link access not recorded");
    }
    let scopes = match state.store.app_key_by_id(&link.app_key_id).await {
        Ok(Some(key)) => onboarding::scopes_to_ask(
            &key.scopes
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        ),
        _ => return error_page(&look, &FlowError::LinkNotFound),
    };
    let abilities: String = scopes
        .iter()
        .filter_map(|s| describe_scope(s))
        .map(|d| format!("<li>{}</li>", escape(d)))
        .collect();
    let company = escape(&look.company());
    let whom = look
        .user_name
        .as_deref()
        .map(|n| format!(" for <strong>{}</strong>", escape(n)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Connect your John Deere account</h1>\
         <p><strong>{company}</strong> asks to connect to your John Deere Operations Center account{whom}. It will be able to:</p>\
         <ul>{abilities}</ul>\
         <p>What happens next:</p>\
         <ol><li>You sign in at John Deere and allow access.</li>\
         <li>John Deere asks which organizations to share: choose the ones that hold your fields.</li>\
         <li>You come back here to see what was connected.</li></ol>\
         <p class=\"muted\">Your John Deere password is entered only at John Deere. You can remove this connection at any time in Operations Center.</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" id=\"continue\">Continue to John Deere</button></form>\
         <p class=\"muted\">This link expires {expires}.</p>",
        csrf = escape(&browser.secret),
        expires = chrono::DateTime::from_timestamp_millis(link.expires_at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
    );
    let mut response = page(
        StatusCode::OK,
        &look,
        "Connect your John Deere account",
        &body,
    );
    browser.set_on(&state, &mut response);
    response
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ContinueForm {
    /// The value of the browser's cookie, as the landing page's form carries it.
    #[serde(default)]
    csrf: String,
}

/// The landing page's button: the form carries the browser's cookie value, which a form
/// posted from another site cannot know (and its `SameSite=Lax` cookie is not sent).
#[utoipa::path(post, path = "/connect/{link_id}", tag = "connect", security(()),
    params(("link_id" = uuid::Uuid, Path, description = "Magic link id")),
    request_body(content = ContinueForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "On to John Deere's consent page")))]
async fn continue_link(
    State(state): State<AppState>,
    Path(link_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ContinueForm>, FormRejection>,
) -> Response {
    // An unreadable form carries no proof of the browser either.
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let Some(secret) = cookie(&headers, BROWSER_COOKIE).filter(|c| *c == csrf) else {
        return error_page(&Look::default(), &FlowError::WrongBrowser);
    };
    let Ok(link_id) = uuid::Uuid::parse_str(&link_id) else {
        return error_page(&Look::default(), &FlowError::LinkNotFound);
    };
    match onboarding::start_from_link(&state, &link_id.to_string(), &content_hash(&secret)).await {
        Ok(url) => redirect(url.as_str(), StatusCode::SEE_OTHER),
        Err(e) => {
            let look = match state.store.magic_link(None, &link_id.to_string()).await {
                Ok(Some(link)) => Look::of_link(&state, &link).await,
                _ => Look::default(),
            };
            error_page(&look, &e)
        }
    }
}

/// A flow handed out by the API: bind this browser and go to John Deere.
/// An authorization's start (its `url`): binds the browser and goes on to John Deere.
#[utoipa::path(get, path = "/connect/john-deere/start/{flow_id}", tag = "connect", security(()),
    params(("flow_id" = uuid::Uuid, Path, description = "Authorization id")),
    responses((status = 302, description = "On to John Deere's consent page")))]
async fn start(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let browser = Browser::from_headers(&headers);
    let Ok(flow_id) = uuid::Uuid::parse_str(&flow_id) else {
        return error_page(&Look::default(), &FlowError::UnknownFlow);
    };
    let mut response =
        match onboarding::start_from_api(&state, &flow_id.to_string(), &browser.hash()).await {
            Ok(url) => redirect(url.as_str(), StatusCode::FOUND),
            Err(e) => error_page(&Look::default(), &e),
        };
    browser.set_on(&state, &mut response);
    response
}

/// Where John Deere sends the grower back after consent (the OAuth redirect URI).
#[utoipa::path(get, path = "/connect/john-deere/callback", tag = "connect", security(()),
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query),
        ("error" = Option<String>, Query), ("error_description" = Option<String>, Query)),
    responses((status = 200, description = "The page", content_type = "text/html", body = String), (status = 302, description = "On to John Deere's connections page, or the app's return URL")))]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return error_page(&Look::default(), &FlowError::UnknownFlow);
    };
    let browser = cookie(&headers, BROWSER_COOKIE).map(|s| content_hash(&s));
    let next = onboarding::callback(&state, params, browser.as_deref()).await;
    render(&state, next).await
}

/// Where John Deere's connections page sends the grower back.
#[utoipa::path(get, path = "/connect/john-deere/organizations/{flow_id}", tag = "connect", security(()),
    params(("flow_id" = uuid::Uuid, Path, description = "Authorization id")),
    responses((status = 200, description = "The page", content_type = "text/html", body = String), (status = 302, description = "On to the app's return URL")))]
async fn organizations_chosen(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let browser = cookie(&headers, BROWSER_COOKIE).map(|s| content_hash(&s));
    let Ok(flow_id) = uuid::Uuid::parse_str(&flow_id) else {
        return error_page(&Look::default(), &FlowError::UnknownFlow);
    };
    let next =
        onboarding::organizations_chosen(&state, &flow_id.to_string(), browser.as_deref()).await;
    render(&state, next).await
}

async fn render(state: &AppState, next: Next) -> Response {
    match next {
        Next::Redirect(to) => redirect(&to, StatusCode::FOUND),
        Next::Finished { flow, outcome } => {
            let look = Look::of_flow(state, Some(&flow)).await;
            result_page(&look, &outcome)
        }
        Next::Failed { flow, error } => {
            let look = Look::of_flow(state, flow.as_ref()).await;
            error_page(&look, &error)
        }
    }
}

fn result_page(look: &Look, outcome: &FlowOutcome) -> Response {
    let list = |orgs: &[onboarding::OrgRef]| -> String {
        orgs.iter()
            .map(|o| format!("<li>{}</li>", escape(&o.name)))
            .collect()
    };
    let company = escape(&look.company());
    let connected = if outcome.connected.is_empty() {
        format!("<p>No organization is shared with {company} yet.</p>")
    } else {
        format!(
            "<p>{company} can now see these organizations:</p><ul id=\"connected\">{}</ul>",
            list(&outcome.connected)
        )
    };
    let not_connected = if outcome.not_connected.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Not shared (you can share them later in Operations Center, under Connections):</p>\
             <ul id=\"not-connected\">{}</ul>",
            list(&outcome.not_connected)
        )
    };
    let body = format!(
        "<section class=\"ok\" style=\"padding-left:12px\"><h1>Your John Deere account is connected</h1>\
         {connected}{not_connected}<p class=\"muted\">You can close this page.</p></section>"
    );
    page(StatusCode::OK, look, "Connected", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; furrow_connect=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, BROWSER_COOKIE).as_deref(), Some("xyz"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("furrow_connect="));
        assert_eq!(cookie(&empty, BROWSER_COOKIE), None);
    }

    #[test]
    fn pages_escape_what_owners_and_john_deere_wrote() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
