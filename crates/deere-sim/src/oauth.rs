//! The authorization server: metadata, authorize page, token endpoint, revocation.

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{AccessGrant, CodeGrant, Grant, Sim, SimState};

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route(
            "/oauth2/{server}/.well-known/oauth-authorization-server",
            get(metadata),
        )
        .route(
            "/oauth2/{server}/v1/authorize",
            get(authorize_page).post(authorize_decision),
        )
        .route("/oauth2/{server}/v1/token", axum::routing::post(token))
        .route("/oauth2/{server}/v1/revoke", axum::routing::post(revoke))
        .route(
            "/oauth2/{server}/v1/keys",
            get(|| async { Json(json!({"keys": []})) }),
        )
}

/// What a token response carries.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedTokens {
    pub token_type: &'static str,
    pub expires_in: u64,
    pub access_token: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Scopes actually granted: the requested ones, narrowed by the user's cap when set.
pub(crate) fn granted_scopes(
    state: &SimState,
    user: &str,
    requested: impl Iterator<Item = String>,
) -> Vec<String> {
    let cap = state
        .world
        .users
        .get(user)
        .and_then(|u| u.scope_cap.clone());
    requested
        .filter(|s| !s.is_empty())
        .filter(|s| cap.as_ref().is_none_or(|c| c.contains(s)))
        .collect()
}

/// Issues an access token (and a refresh token when `offline_access` was granted).
pub(crate) fn issue(state: &mut SimState, grant: Grant) -> IssuedTokens {
    // JWT-shaped: a header, claims naming the grant, and a fake signature.
    let claims = json!({"sim": true, "cid": grant.client_key, "uid": grant.user,
                        "scp": grant.scopes, "jti": random_token("")});
    let access_token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.{}",
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_token("")
    );
    let ttl = state.settings.token_ttl_secs;
    let refresh_token = grant
        .scopes
        .iter()
        .any(|s| s == "offline_access")
        .then(|| random_token("sim-rt-"));
    if let Some(rt) = &refresh_token {
        state.refresh_tokens.insert(rt.clone(), grant.clone());
    }
    let id_token = grant.scopes.iter().any(|s| s == "openid").then(|| {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(json!({"sub": grant.user}).to_string())
        )
    });
    let scope = grant.scopes.join(" ");
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            grant,
            expires_at: Instant::now() + Duration::from_secs(ttl),
        },
    );
    IssuedTokens {
        token_type: "Bearer",
        expires_in: ttl,
        access_token,
        scope,
        refresh_token,
        id_token,
    }
}

fn check_server(sim: &Sim, server: &str) -> Result<(), Response> {
    if server == sim.0.server_id {
        Ok(())
    } else {
        Err((
            StatusCode::NOT_FOUND,
            Json(json!({"errorCode": "E0000007", "errorSummary": "Not found"})),
        )
            .into_response())
    }
}

async fn metadata(State(sim): State<Sim>, Path(server): Path<String>) -> Response {
    if let Err(r) = check_server(&sim, &server) {
        return r;
    }
    let issuer = sim.issuer_url();
    (
        [(header::CACHE_CONTROL, "max-age=86400, must-revalidate")],
        Json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/v1/authorize"),
            "token_endpoint": format!("{issuer}/v1/token"),
            "revocation_endpoint": format!("{issuer}/v1/revoke"),
            "jwks_uri": format!("{issuer}/v1/keys"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["ag1","ag2","ag3","eq1","eq2","files","org1","org2","openid","profile","offline_access"],
        })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    response_type: Option<String>,
    #[serde(default)]
    scope: String,
    redirect_uri: Option<String>,
    #[serde(default)]
    state: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    login_hint: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bad_request_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><title>Error</title><h1>400 Bad Request</h1><p>{}</p>",
            escape(message)
        )),
    )
        .into_response()
}

async fn authorize_page(
    State(sim): State<Sim>,
    Path(server): Path<String>,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    if let Err(r) = check_server(&sim, &server) {
        return r;
    }
    let (Some(client_id), Some(redirect_uri)) = (&p.client_id, &p.redirect_uri) else {
        return bad_request_page("client_id and redirect_uri are required");
    };
    if p.response_type.as_deref() != Some("code") {
        return bad_request_page("response_type must be code");
    }
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref() != Some("S256") {
        return bad_request_page("code_challenge_method must be S256");
    }
    let users: Vec<String> = {
        let state = sim.state();
        let Some(app) = state.apps.get(client_id) else {
            return bad_request_page("unknown client_id");
        };
        if !app.redirect_uris.is_empty() && !app.redirect_uris.contains(redirect_uri) {
            // Okta's words for an unregistered redirect URI.
            return bad_request_page(
                "The 'redirect_uri' parameter must be a Login redirect URI in the client app settings",
            );
        }
        state.world.users.keys().cloned().collect()
    };
    let options: String = users
        .iter()
        .map(|u| {
            let selected = if p.login_hint.as_deref() == Some(u) {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{0}\"{selected}>{0}</option>", escape(u))
        })
        .collect();
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let page = format!(
        "<!doctype html><html><head><title>John Deere (simulated) sign in</title></head><body>\
         <h1>Allow {client} to access your John Deere data?</h1>\
         <p>Scopes requested: <code>{scope}</code></p>\
         <form method=\"post\">{h1}{h2}{h3}{h4}{h5}\
         <label>Sign in as <select name=\"user\">{options}</select></label>\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
         </form></body></html>",
        client = escape(client_id),
        scope = escape(&p.scope),
        h1 = hidden("client_id", client_id),
        h2 = hidden("redirect_uri", redirect_uri),
        h3 = hidden("scope", &p.scope),
        h4 = hidden("state", &p.state),
        h5 = hidden("code_challenge", p.code_challenge.as_deref().unwrap_or("")),
    );
    Html(page).into_response()
}

#[derive(Debug, Deserialize)]
struct AuthorizeDecision {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    user: String,
    decision: String,
}

/// The simulated John Deere sign-in session (the user name), set when a grower allows access.
pub(crate) const SESSION_COOKIE: &str = "sim_session";

/// The signed-in user of a browser request, if the session names a known one.
pub(crate) fn signed_in_user(state: &SimState, headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|user| state.world.users.contains_key(user))
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> Result<String, Response> {
    let mut url =
        url::Url::parse(uri).map_err(|_| bad_request_page("redirect_uri is not a URL"))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Ok(url.to_string())
}

async fn authorize_decision(
    State(sim): State<Sim>,
    Path(server): Path<String>,
    Form(d): Form<AuthorizeDecision>,
) -> Response {
    if let Err(r) = check_server(&sim, &server) {
        return r;
    }
    if d.decision != "allow" {
        return match with_query(
            &d.redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The resource owner or authorization server denied the request.",
                ),
                ("state", &d.state),
            ],
        ) {
            Ok(location) => Redirect::to(&location).into_response(),
            Err(r) => r,
        };
    }
    let code = {
        let mut state = sim.state();
        if !state.apps.contains_key(&d.client_id) {
            return bad_request_page("unknown client_id");
        }
        if !state.world.users.contains_key(&d.user) {
            return bad_request_page("unknown user");
        }
        let scopes = granted_scopes(
            &state,
            &d.user,
            d.scope.split_whitespace().map(str::to_string),
        );
        let grant = state.new_grant(&d.client_id, &d.user, scopes);
        let code = random_token("sim-code-");
        state.codes.insert(
            code.clone(),
            CodeGrant {
                grant,
                redirect_uri: d.redirect_uri.clone(),
                code_challenge: (!d.code_challenge.is_empty()).then(|| d.code_challenge.clone()),
                expires_at: Instant::now() + Duration::from_secs(600),
            },
        );
        code
    };
    match with_query(&d.redirect_uri, &[("code", &code), ("state", &d.state)]) {
        Ok(location) => {
            // The grower is now signed in at John Deere: its connections page knows who it is.
            let session = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
                d.user
            );
            let mut response = Redirect::to(&location).into_response();
            if let Ok(value) = header::HeaderValue::from_str(&session) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-cache, no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(crate) fn invalid_grant() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "The refresh token is invalid or expired.",
    )
}

pub(crate) fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed.",
    )
}

/// Client credentials from HTTP Basic (`client_secret_basic`).
pub(crate) fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn authenticate_client(state: &SimState, headers: &HeaderMap, form: &TokenForm) -> Option<String> {
    let (id, secret) = basic_auth(headers)
        .or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))?;
    let app = state.apps.get(&id)?;
    (app.secret == secret).then_some(id)
}

async fn token(
    State(sim): State<Sim>,
    Path(server): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Err(r) = check_server(&sim, &server) {
        return r;
    }
    let mut state = sim.state();
    let Some(client_key) = authenticate_client(&state, &headers, &form) else {
        return invalid_client();
    };
    let issued = match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = form.code.as_deref().and_then(|c| state.codes.remove(c)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code is invalid or has expired.",
                );
            };
            if code.expires_at < Instant::now()
                || code.grant.client_key != client_key
                || form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str())
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code is invalid or has expired.",
                );
            }
            if let Some(challenge) = &code.code_challenge {
                let verified = form.code_verifier.as_deref().is_some_and(|v| {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == *challenge
                });
                if !verified {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "PKCE verification failed for code challenge.",
                    );
                }
            }
            issue(&mut state, code.grant)
        }
        Some("refresh_token") => {
            let Some(rt) = form.refresh_token.clone() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required.",
                );
            };
            let grant = match state.refresh_tokens.get(&rt).cloned() {
                Some(grant) => grant,
                None => match state.rotated_out.get(&rt).copied() {
                    // Within the rotation grace period the previous token still works.
                    Some((grant_id, rotated_at))
                        if rotated_at.elapsed().as_secs() < state.settings.rotation_grace_secs
                            && !state.revoked_grants.contains(&grant_id) =>
                    {
                        match state
                            .refresh_tokens
                            .values()
                            .find(|g| g.grant_id == grant_id)
                            .cloned()
                        {
                            Some(grant) => grant,
                            None => return invalid_grant(),
                        }
                    }
                    Some((grant_id, _)) if state.settings.reuse_detection => {
                        state.revoke_grants(&[grant_id].into_iter().collect());
                        return invalid_grant();
                    }
                    _ => return invalid_grant(),
                },
            };
            if grant.client_key != client_key {
                return invalid_grant();
            }
            let rotate = state.settings.rotate_refresh_tokens;
            // A refresh re-issues what the grant already holds; it never widens it.
            let mut issued = {
                let saved = grant.scopes.iter().any(|s| s == "offline_access");
                let mut tokens = issue(&mut state, grant.clone());
                if !rotate {
                    // The new refresh token `issue` minted is dropped: the old one stays valid and
                    // is returned unchanged, as John Deere's recorded responses show.
                    if let Some(minted) = tokens.refresh_token.take() {
                        state.refresh_tokens.remove(&minted);
                    }
                    tokens.refresh_token = saved.then(|| rt.clone());
                }
                tokens
            };
            if state.settings.omit_refresh_token_on_refresh && !rotate {
                issued.refresh_token = None;
            }
            if rotate {
                state.refresh_tokens.remove(&rt);
                state
                    .rotated_out
                    .insert(rt, (grant.grant_id, Instant::now()));
            }
            issued.token_type = "Bearer";
            issued
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required.",
            )
        }
    };
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(issued),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn revoke(
    State(sim): State<Sim>,
    Path(server): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    if let Err(r) = check_server(&sim, &server) {
        return r;
    }
    let mut state = sim.state();
    let as_token_form = TokenForm {
        grant_type: None,
        code: None,
        redirect_uri: None,
        refresh_token: None,
        code_verifier: None,
        client_id: form.client_id.clone(),
        client_secret: form.client_secret.clone(),
    };
    let Some(client_key) = authenticate_client(&state, &headers, &as_token_form) else {
        return invalid_client();
    };
    if let Some(token) = form.token {
        let grant_id = state
            .refresh_tokens
            .get(&token)
            .or_else(|| state.access_tokens.get(&token).map(|a| &a.grant))
            .filter(|g| g.client_key == client_key)
            .map(|g| g.grant_id);
        if let Some(id) = grant_id {
            state.revoke_grants(&[id].into_iter().collect());
        }
    }
    // RFC 7009: 200 whether or not the token was known.
    StatusCode::OK.into_response()
}
