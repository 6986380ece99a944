//! Connecting growers: the owner's John Deere app registrations (Leaf's app keys), Leaf's magic
//! links, and furrow's authorization-URL helper. The browser side is [`super::connect`].

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::credentials::{required, user_must_exist};
use super::error::{ApiError, ApiResult};
use super::extract::{parse_id, ApiJson, FlexBool, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::domain::credential::ClientEnvironment;
use crate::onboarding::{self, FlowApp, NewFlow, JOHN_DEERE, LEAF_PROVIDERS};
use crate::store::{leaf_time_from_ms, leaf_time_now, AppKeyRecord, MagicLinkRecord};

const APP_KEYS: &str = "/services/usermanagement/api/app-keys";
const MAGIC_LINKS: &str = "/services/widgets/api/magic-link";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all_app_keys))
        .routes(routes!(list_app_keys))
        .routes(routes!(
            get_app_key,
            post_app_key,
            put_app_key,
            delete_app_key
        ))
        .routes(routes!(create_magic_link))
        .routes(routes!(list_magic_links))
        .routes(routes!(get_magic_link, delete_magic_link))
        .routes(routes!(create_authorization))
        .routes(routes!(get_authorization))
}

/// Only John Deere is connected by furrow; Leaf's other providers get a clear 400.
fn provider(raw: &str) -> ApiResult<&'static str> {
    if raw == JOHN_DEERE {
        Ok(JOHN_DEERE)
    } else if LEAF_PROVIDERS.contains(&raw) {
        Err(ApiError::bad(
            "provider",
            format!("furrow connects John Deere only ({raw} is not supported)"),
        ))
    } else {
        Err(ApiError::NotFound("provider"))
    }
}

fn app_name(raw: &str) -> ApiResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 100
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ApiError::bad(
            "appName",
            "must be 1 to 100 letters, digits, '-', '_' or '.'",
        ))
    }
}

fn environment(raw: &str) -> ApiResult<ClientEnvironment> {
    ClientEnvironment::parse(raw)
        .ok_or_else(|| ApiError::bad("clientEnvironment", "must be STAGE or PRODUCTION"))
}

fn scopes(given: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let given = given.unwrap_or_default();
    if given.len() > 32 {
        return Err(ApiError::bad("scopes", "at most 32 scopes"));
    }
    onboarding::deere_scopes(&given).map_err(|e| ApiError::bad("scopes", e))
}

/// An app key as Leaf lists it (never the secret).
fn app_key_json(key: &AppKeyRecord) -> Value {
    json!({
        "provider": key.provider,
        "appName": key.app_name,
        "clientEnvironment": key.client_environment,
        "clientKey": key.client_key,
        "scopes": key.scopes.split_whitespace().collect::<Vec<_>>(),
        "createdTime": key.created_at,
        "redirectUri": null,
    })
}

fn with_redirect_uri(state: &AppState, mut body: Value) -> Value {
    body["redirectUri"] = json!(onboarding::callback_url(state));
    body
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AppKeyBody {
    client_key: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
}

/// The API owner's app keys (never their secrets).
#[utoipa::path(get, path = "/services/usermanagement/api/app-keys", tag = "onboarding",
    responses((status = 200, description = "App keys", body = Vec<schemas::AppKey>)))]
async fn list_all_app_keys(State(state): State<AppState>, owner: Owner) -> ApiResult<Json<Value>> {
    app_key_list(&state, &owner, None).await
}

/// The API owner's app keys for one provider.
#[utoipa::path(get, path = "/services/usermanagement/api/app-keys/{provider}", tag = "onboarding", params(("provider" = String, Path, description = "`JohnDeere`", pattern = "^JohnDeere$")),
    responses((status = 200, description = "App keys", body = Vec<schemas::AppKey>)))]
async fn list_app_keys(
    State(state): State<AppState>,
    owner: Owner,
    Path(raw_provider): Path<String>,
) -> ApiResult<Json<Value>> {
    app_key_list(&state, &owner, Some(provider(&raw_provider)?)).await
}

async fn app_key_list(
    state: &AppState,
    owner: &Owner,
    provider: Option<&str>,
) -> ApiResult<Json<Value>> {
    let keys = state.store.app_keys(&owner.id, provider).await?;
    Ok(Json(Value::Array(
        keys.iter()
            .map(|k| with_redirect_uri(state, app_key_json(k)))
            .collect(),
    )))
}

/// One app key.
#[utoipa::path(get, path = "/services/usermanagement/api/app-keys/{provider}/{app_name}/{environment}", tag = "onboarding", params(("provider" = String, Path, description = "`JohnDeere`", pattern = "^JohnDeere$"), ("app_name" = String, Path, description = "The app's name at John Deere"), ("environment" = String, Path, description = "`STAGE` or `PRODUCTION`", pattern = "^(STAGE|PRODUCTION)$")),
    responses((status = 200, description = "The app key", body = schemas::AppKey)))]
async fn get_app_key(
    State(state): State<AppState>,
    owner: Owner,
    Path((raw_provider, raw_name, raw_env)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let provider = provider(&raw_provider)?;
    let name = app_name(&raw_name)?;
    let env = environment(&raw_env)?;
    let key = state
        .store
        .app_key(&owner.id, provider, &name, env.as_str())
        .await?
        .ok_or(ApiError::NotFound("app key"))?;
    Ok(Json(with_redirect_uri(&state, app_key_json(&key))))
}

/// Creates, or replaces the key and secret of, a registration: 201 when new, 200 otherwise.
#[utoipa::path(post, path = "/services/usermanagement/api/app-keys/{provider}/{app_name}/{environment}", tag = "onboarding", params(("provider" = String, Path, description = "`JohnDeere`", pattern = "^JohnDeere$"), ("app_name" = String, Path, description = "The app's name at John Deere"), ("environment" = String, Path, description = "`STAGE` or `PRODUCTION`", pattern = "^(STAGE|PRODUCTION)$")),
    request_body = AppKeyBody,
    responses(
        (status = 201, description = "Created", body = schemas::AppKey),
        (status = 200, description = "Replaced", body = schemas::AppKey),
    ))]
async fn post_app_key(
    State(state): State<AppState>,
    owner: Owner,
    Path(path): Path<(String, String, String)>,
    ApiJson(body): ApiJson<AppKeyBody>,
) -> ApiResult<Response> {
    let (key, created) = store_app_key(&state, &owner, path, body, false).await?;
    let location = format!(
        "{APP_KEYS}/{}/{}/{}",
        key.provider, key.app_name, key.client_environment
    );
    let body = Json(with_redirect_uri(&state, app_key_json(&key)));
    Ok(if created {
        super::created(location, body)
    } else {
        body.into_response()
    })
}

/// Replaces an existing registration (404 when there is none).
#[utoipa::path(put, path = "/services/usermanagement/api/app-keys/{provider}/{app_name}/{environment}", tag = "onboarding", params(("provider" = String, Path, description = "`JohnDeere`", pattern = "^JohnDeere$"), ("app_name" = String, Path, description = "The app's name at John Deere"), ("environment" = String, Path, description = "`STAGE` or `PRODUCTION`", pattern = "^(STAGE|PRODUCTION)$")),
    request_body = AppKeyBody,
    responses((status = 200, description = "Replaced", body = schemas::AppKey)))]
async fn put_app_key(
    State(state): State<AppState>,
    owner: Owner,
    Path(path): Path<(String, String, String)>,
    ApiJson(body): ApiJson<AppKeyBody>,
) -> ApiResult<Json<Value>> {
    let (key, _) = store_app_key(&state, &owner, path, body, true).await?;
    Ok(Json(with_redirect_uri(&state, app_key_json(&key))))
}

async fn store_app_key(
    state: &AppState,
    owner: &Owner,
    (raw_provider, raw_name, raw_env): (String, String, String),
    body: AppKeyBody,
    must_exist: bool,
) -> ApiResult<(AppKeyRecord, bool)> {
    let provider = provider(&raw_provider)?;
    let name = app_name(&raw_name)?;
    let env = environment(&raw_env)?;
    let client_key = required(body.client_key, "clientKey")?;
    let client_secret = required(body.client_secret, "clientSecret")?;
    let scopes = scopes(body.scopes)?;
    let existing = state
        .store
        .app_key(&owner.id, provider, &name, env.as_str())
        .await?;
    if must_exist && existing.is_none() {
        return Err(ApiError::NotFound("app key"));
    }
    let key = AppKeyRecord {
        id: existing
            .as_ref()
            .map(|k| k.id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        owner_id: owner.id.clone(),
        provider: provider.into(),
        app_name: name,
        client_environment: env.as_str().into(),
        client_key,
        client_secret_enc: state.keyring.encrypt(&client_secret),
        scopes: scopes.join(" "),
        created_at: existing
            .as_ref()
            .map(|k| k.created_at.clone())
            .unwrap_or_else(leaf_time_now),
    };
    let created = state.store.put_app_key(&key).await?;
    Ok((key, created))
}

/// Delete an app key.
#[utoipa::path(delete, path = "/services/usermanagement/api/app-keys/{provider}/{app_name}/{environment}", tag = "onboarding", params(("provider" = String, Path, description = "`JohnDeere`", pattern = "^JohnDeere$"), ("app_name" = String, Path, description = "The app's name at John Deere"), ("environment" = String, Path, description = "`STAGE` or `PRODUCTION`", pattern = "^(STAGE|PRODUCTION)$")),
    responses((status = 204, description = "Deleted")))]
async fn delete_app_key(
    State(state): State<AppState>,
    owner: Owner,
    Path((raw_provider, raw_name, raw_env)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let provider = provider(&raw_provider)?;
    let name = app_name(&raw_name)?;
    let env = environment(&raw_env)?;
    if state
        .store
        .delete_app_key(&owner.id, provider, &name, env.as_str())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("app key"))
    }
}

/// The stored registration a link or URL uses: the one named, or the owner's only John Deere
/// one.
async fn resolve_app_key(
    state: &AppState,
    owner: &Owner,
    name: Option<&str>,
    env: Option<&str>,
) -> ApiResult<AppKeyRecord> {
    match (name, env) {
        (Some(name), Some(env)) => {
            let name = app_name(name)?;
            let env = environment(env)?;
            state
                .store
                .app_key(&owner.id, JOHN_DEERE, &name, env.as_str())
                .await?
                .ok_or_else(|| {
                    ApiError::bad(
                        "appName",
                        format!("no John Deere app key {name} for {}", env.as_str()),
                    )
                })
        }
        (Some(_), None) => Err(ApiError::bad(
            "clientEnvironment",
            "is required with appName",
        )),
        (None, Some(_)) => Err(ApiError::bad(
            "appName",
            "is required with clientEnvironment",
        )),
        (None, None) => {
            let mut keys = state.store.app_keys(&owner.id, Some(JOHN_DEERE)).await?;
            match keys.len() {
                1 => Ok(keys.remove(0)),
                0 => Err(ApiError::bad(
                    "appName",
                    format!("register your John Deere app first: POST {APP_KEYS}/JohnDeere/{{appName}}/{{clientEnvironment}}"),
                )),
                _ => Err(ApiError::bad(
                    "appName",
                    "you have several John Deere app keys: name one with appName and clientEnvironment",
                )),
            }
        }
    }
}

fn return_url(raw: Option<String>, field: &str) -> ApiResult<Option<Url>> {
    let Some(raw) = raw else { return Ok(None) };
    let url = Url::parse(&raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .filter(|_| raw.len() <= 2048)
        .ok_or_else(|| {
            ApiError::bad(
                field,
                "must be an absolute http(s) URL of at most 2048 characters",
            )
        })?;
    Ok(Some(url))
}

/// Leaf's magic link kinds: `provider` (several providers) and `authentication` (one).
fn widget(raw: &str) -> ApiResult<&'static str> {
    match raw {
        "provider" => Ok("PROVIDER"),
        "authentication" => Ok("AUTHENTICATION"),
        _ => Err(ApiError::NotFound("magic link kind")),
    }
}

/// Leaf's magic link `settings`: what the grower's page shows.
#[derive(utoipa::ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LinkSettings {
    background_color: Option<String>,
    header_image: Option<String>,
    company_logo: Option<String>,
    company_name: Option<String>,
    show_leaf_user_name: Option<FlexBool>,
    disconnect_enabled: Option<FlexBool>,
}

impl LinkSettings {
    fn validated(self) -> ApiResult<Value> {
        let color = match self.background_color {
            None => None,
            Some(c) if is_hex_color(&c) => Some(c),
            Some(_) => {
                return Err(ApiError::bad(
                    "settings.backgroundColor",
                    "must be a hex color such as #1a7f37",
                ))
            }
        };
        let image = |v: Option<String>, field: &str| -> ApiResult<Option<String>> {
            match v {
                None => Ok(None),
                Some(u)
                    if u.len() <= 2048 && Url::parse(&u).is_ok_and(|p| p.scheme() == "https") =>
                {
                    Ok(Some(u))
                }
                Some(_) => Err(ApiError::bad(field, "must be an https URL")),
            }
        };
        let company_name = match self.company_name {
            Some(n) if n.chars().count() > 100 => {
                return Err(ApiError::bad(
                    "settings.companyName",
                    "must be at most 100 characters",
                ))
            }
            other => other,
        };
        Ok(json!({
            "backgroundColor": color,
            "headerImage": image(self.header_image, "settings.headerImage")?,
            "companyLogo": image(self.company_logo, "settings.companyLogo")?,
            "companyName": company_name,
            "showLeafUserName": self.show_leaf_user_name.map(FlexBool::value).unwrap_or(false),
            "disconnectEnabled": self.disconnect_enabled.map(FlexBool::value).unwrap_or(false),
        }))
    }
}

pub fn is_hex_color(c: &str) -> bool {
    c.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.chars().all(|ch| ch.is_ascii_hexdigit()))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MagicLinkBody {
    expires_in: Option<i64>,
    allowed_providers: Option<Vec<String>>,
    /// The `authentication` kind names one provider.
    provider: Option<String>,
    settings: Option<LinkSettings>,
    /// furrow: how many times the link may start a connection (default 3, at most 100).
    max_usage: Option<i64>,
    /// furrow: which stored app key (default: the only John Deere one).
    app_name: Option<String>,
    client_environment: Option<String>,
    /// furrow: where the grower's browser goes at the end, with the outcome in the query
    /// (default: furrow's own result page).
    return_url: Option<String>,
}

/// Leaf's bounds on `expiresIn`: default and minimum 15 minutes, at most a year.
const MIN_EXPIRES_IN: i64 = 900;
const MAX_EXPIRES_IN: i64 = 365 * 86_400;
const DEFAULT_MAX_USAGE: i64 = 3;

fn providers(widget: &str, body: &MagicLinkBody) -> ApiResult<Vec<String>> {
    let (field, list) = if widget == "AUTHENTICATION" {
        let p = body
            .provider
            .clone()
            .ok_or_else(|| ApiError::bad("provider", "is required"))?;
        ("provider", vec![p])
    } else {
        if body.provider.is_some() {
            return Err(ApiError::bad(
                "provider",
                "is for authentication links; use allowedProviders",
            ));
        }
        (
            "allowedProviders",
            body.allowed_providers
                .clone()
                .unwrap_or_else(|| vec![JOHN_DEERE.to_string()]),
        )
    };
    if list.is_empty() {
        return Err(ApiError::bad(field, "must name at least one provider"));
    }
    for p in &list {
        if p != JOHN_DEERE {
            let why = if LEAF_PROVIDERS.contains(&p.as_str()) {
                format!("furrow connects John Deere only ({p} is not supported)")
            } else {
                format!("unknown provider {p:?}")
            };
            return Err(ApiError::bad(field, why));
        }
    }
    Ok(vec![JOHN_DEERE.to_string()])
}

/// Create a magic link for a user: a page the grower opens to connect John Deere.
#[utoipa::path(post, path = "/services/widgets/api/magic-link/users/{id}/{widget}", tag = "onboarding", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("widget" = String, Path, description = "`authentication` or `provider`", pattern = "^(authentication|provider)$")),
    request_body = MagicLinkBody,
    responses((status = 201, description = "Created", body = schemas::NewMagicLink)))]
async fn create_magic_link(
    State(state): State<AppState>,
    owner: Owner,
    Path((id, raw_widget)): Path<(String, String)>,
    ApiJson(body): ApiJson<MagicLinkBody>,
) -> ApiResult<Response> {
    let widget = widget(&raw_widget)?;
    let user = user_must_exist(&state, &owner, &id).await?;
    let expires_in = body.expires_in.unwrap_or(MIN_EXPIRES_IN);
    if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(ApiError::bad(
            "expiresIn",
            format!("must be from {MIN_EXPIRES_IN} to {MAX_EXPIRES_IN} seconds"),
        ));
    }
    let max_usage = body.max_usage.unwrap_or(DEFAULT_MAX_USAGE);
    if !(1..=100).contains(&max_usage) {
        return Err(ApiError::bad("maxUsage", "must be from 1 to 100"));
    }
    let allowed = providers(widget, &body)?;
    let return_url = return_url(body.return_url, "returnUrl")?;
    let settings = body.settings.unwrap_or_default().validated()?;
    let key = resolve_app_key(
        &state,
        &owner,
        body.app_name.as_deref(),
        body.client_environment.as_deref(),
    )
    .await?;
    let now = crate::store::now_ms();
    let link = MagicLinkRecord {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id.clone(),
        leaf_user_id: user,
        app_key_id: key.id.clone(),
        widget: widget.into(),
        settings: settings.to_string(),
        allowed_providers: json!(allowed).to_string(),
        return_url: return_url.map(|u| u.to_string()),
        max_usage,
        usage_count: 0,
        created_at: leaf_time_now(),
        expires_at_ms: now + expires_in * 1000,
        last_accessed_ms: None,
    };
    state.store.insert_magic_link(&link).await?;
    Ok(super::created(
        format!("{MAGIC_LINKS}/{raw_widget}/{}", link.id),
        Json(json!({
            "id": link.id,
            "leafUserId": link.leaf_user_id,
            "link": onboarding::magic_link_url(&state, &link.id),
            "expiresAt": leaf_time_from_ms(link.expires_at_ms),
        })),
    ))
}

fn magic_link_json(state: &AppState, link: &MagicLinkRecord, key: Option<&AppKeyRecord>) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "id": link.id,
        "link": onboarding::magic_link_url(state, &link.id),
        "createdAt": link.created_at,
        "expiresAt": leaf_time_from_ms(link.expires_at_ms),
        "lastAccessedAt": link.last_accessed_ms.map(leaf_time_from_ms),
        "leafUserId": link.leaf_user_id,
        "maxUsage": link.max_usage,
        "usageCount": link.usage_count,
        "widget": link.widget,
        "settings": parse(&link.settings),
        "allowedProviders": parse(&link.allowed_providers),
        "returnUrl": link.return_url,
        "appName": key.map(|k| k.app_name.clone()),
        "clientEnvironment": key.map(|k| k.client_environment.clone()),
    })
}

/// The API owner's magic links of one kind.
#[utoipa::path(get, path = "/services/widgets/api/magic-link/{widget}", tag = "onboarding", params(("widget" = String, Path, description = "`authentication` or `provider`", pattern = "^(authentication|provider)$"), PageQuery),
    responses((status = 200, description = "Magic links", body = Vec<schemas::MagicLink>)))]
async fn list_magic_links(
    State(state): State<AppState>,
    owner: Owner,
    Path(raw_widget): Path<String>,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let widget = widget(&raw_widget)?;
    let paging = Paging::from_params(&params)?;
    let (links, total) = state
        .store
        .magic_links(&owner.id, widget, paging.offset(), paging.size)
        .await?;
    let keys = state.store.app_keys(&owner.id, None).await?;
    let body = links
        .iter()
        .map(|l| magic_link_json(&state, l, keys.iter().find(|k| k.id == l.app_key_id)))
        .collect();
    let path = format!("{MAGIC_LINKS}/{raw_widget}");
    Ok((paging.headers(total, &path), Json(Value::Array(body))))
}

async fn owned_link(
    state: &AppState,
    owner: &Owner,
    raw_widget: &str,
    raw_id: &str,
) -> ApiResult<MagicLinkRecord> {
    let widget = widget(raw_widget)?;
    let id = parse_id(raw_id, "magic link")?;
    state
        .store
        .magic_link(Some(&owner.id), &id)
        .await?
        .filter(|l| l.widget == widget)
        .ok_or(ApiError::NotFound("magic link"))
}

/// One magic link.
#[utoipa::path(get, path = "/services/widgets/api/magic-link/{widget}/{link_id}", tag = "onboarding",
    params(("widget" = String, Path, description = "`authentication` or `provider`", pattern = "^(authentication|provider)$"), ("link_id" = uuid::Uuid, Path, description = "Magic link id")),
    responses((status = 200, description = "The magic link", body = schemas::MagicLink)))]
async fn get_magic_link(
    State(state): State<AppState>,
    owner: Owner,
    Path((raw_widget, raw_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let link = owned_link(&state, &owner, &raw_widget, &raw_id).await?;
    let key = state.store.app_key_by_id(&link.app_key_id).await?;
    Ok(Json(magic_link_json(&state, &link, key.as_ref())))
}

/// Delete a magic link (it stops working at once).
#[utoipa::path(delete, path = "/services/widgets/api/magic-link/{widget}/{link_id}", tag = "onboarding",
    params(("widget" = String, Path, description = "`authentication` or `provider`", pattern = "^(authentication|provider)$"), ("link_id" = uuid::Uuid, Path, description = "Magic link id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_magic_link(
    State(state): State<AppState>,
    owner: Owner,
    Path((raw_widget, raw_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let link = owned_link(&state, &owner, &raw_widget, &raw_id).await?;
    state.store.delete_magic_link(&owner.id, &link.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthorizeBody {
    app_name: Option<String>,
    client_environment: Option<String>,
    client_key: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    return_url: Option<String>,
}

/// furrow's authorization-URL helper: a URL to send the grower's browser to, which starts
/// John Deere's consent for this Leaf user and ends at `returnUrl` (Leaf's `get_url`, with
/// the code exchange done by furrow so the refresh token never leaves it).
#[utoipa::path(post, path = "/services/usermanagement/api/users/{id}/john-deere-credentials/authorize",
    tag = "onboarding", params(("id" = uuid::Uuid, Path, description = "Leaf user id")), request_body = AuthorizeBody,
    responses((status = 201, description = "Created: send the grower to `url`", body = schemas::Authorization)))]
async fn create_authorization(
    State(state): State<AppState>,
    owner: Owner,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AuthorizeBody>,
) -> ApiResult<Response> {
    let user = user_must_exist(&state, &owner, &id).await?;
    let return_url = return_url(body.return_url, "returnUrl")?;
    let asked = scopes(body.scopes)?;
    let app = match body.client_key {
        Some(client_key) => {
            let client_key = required(Some(client_key), "clientKey")?;
            let secret = required(body.client_secret, "clientSecret")?;
            let env = required(body.client_environment, "clientEnvironment")?;
            if body.app_name.is_some() {
                return Err(ApiError::bad(
                    "appName",
                    "give either appName or clientKey and clientSecret",
                ));
            }
            FlowApp {
                client_key,
                client_secret: SecretString::from(secret),
                environment: environment(&env)?,
                scopes: asked,
            }
        }
        None => {
            if body.client_secret.is_some() {
                return Err(ApiError::bad("clientKey", "is required with clientSecret"));
            }
            let key = resolve_app_key(
                &state,
                &owner,
                body.app_name.as_deref(),
                body.client_environment.as_deref(),
            )
            .await?;
            let scopes = if asked.is_empty() {
                key.scopes.split_whitespace().map(str::to_string).collect()
            } else {
                asked
            };
            FlowApp {
                client_key: key.client_key.clone(),
                client_secret: state
                    .keyring
                    .decrypt(&key.client_secret_enc)
                    .map_err(ApiError::internal)?,
                environment: environment(&key.client_environment)?,
                scopes,
            }
        }
    };
    let flow = onboarding::create_flow(
        &state,
        NewFlow {
            owner_id: owner.id.clone(),
            leaf_user_id: user.clone(),
            app,
            return_url,
            magic_link_id: None,
        },
    )
    .await?;
    Ok(super::created(
        format!(
            "/services/usermanagement/api/users/{user}/john-deere-credentials/authorize/{}",
            flow.id
        ),
        Json(flow_json(&state, &flow)),
    ))
}

fn flow_json(state: &AppState, flow: &crate::store::OAuthFlowRecord) -> Value {
    json!({
        "id": flow.id,
        "leafUserId": flow.leaf_user_id,
        "url": onboarding::start_url(state, &flow.id),
        "redirectUri": onboarding::callback_url(state),
        "scopes": flow.scopes.split_whitespace().collect::<Vec<_>>(),
        "status": flow.phase,
        "outcome": flow.outcome.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
        "createdTime": flow.created_at,
        "expiresAt": leaf_time_from_ms(flow.expires_at_ms),
    })
}

/// An authorization's state (and, once finished, its outcome).
#[utoipa::path(get, path = "/services/usermanagement/api/users/{id}/john-deere-credentials/authorize/{flow_id}",
    tag = "onboarding", params(("id" = uuid::Uuid, Path, description = "Leaf user id"), ("flow_id" = uuid::Uuid, Path, description = "Authorization id")),
    responses((status = 200, description = "The authorization", body = schemas::Authorization)))]
async fn get_authorization(
    State(state): State<AppState>,
    owner: Owner,
    Path((id, flow_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = user_must_exist(&state, &owner, &id).await?;
    let flow_id = parse_id(&flow_id, "authorization")?;
    let flow = state
        .store
        .flow(&flow_id)
        .await?
        .filter(|f| f.owner_id == owner.id && f.leaf_user_id == user)
        .ok_or(ApiError::NotFound("authorization"))?;
    Ok(Json(flow_json(&state, &flow)))
}
