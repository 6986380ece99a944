//! API owners: `POST /api/authenticate` (Leaf's JHipster-style login) and the bearer-token
//! extractor every other route uses.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, FlexBool};
use crate::app::AppState;
use crate::store::{now_ms, Store, StoreError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(authenticate))
}

/// HMAC key for `id_token`s, shared by all replicas through the database.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    email: String,
    iat: i64,
    exp: i64,
    iss: String,
}

const ISSUER: &str = "furrow";

/// The authenticated API owner.
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: String,
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::Unauthorized("missing Authorization: Bearer <id_token>".into())
            })?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthorized("Authorization must be Bearer <id_token>".into())
        })?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        let claims = decode::<Claims>(token.trim(), &state.jwt.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the id_token has expired; authenticate again".into())
                }
                _ => ApiError::Unauthorized("the id_token is invalid".into()),
            })?
            .claims;
        // An owner deleted after the token was issued has no access (checked at most once a
        // minute per owner and replica).
        let now = now_ms();
        let known = {
            let cache = state.known_owners.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&claims.sub).is_some_and(|until| *until > now)
        };
        if !known {
            if !state.store.owner_exists(&claims.sub).await? {
                return Err(ApiError::Unauthorized("the id_token is invalid".into()));
            }
            let mut cache = state.known_owners.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|_, until| *until > now);
            cache.insert(claims.sub.clone(), now + 60_000);
        }
        Ok(Owner { id: claims.sub })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Login {
    /// The API owner's email.
    username: String,
    password: String,
    /// Leaf sends a string ("true"/"false"); a JSON boolean is accepted too.
    #[serde(default)]
    remember_me: Option<FlexBool>,
}

/// Log in as an API owner: the `id_token` lasts a day, or 30 days with `rememberMe`.
/// Repeated failures for a username are answered 429 with `Retry-After`.
#[utoipa::path(post, path = "/api/authenticate", tag = "authentication", security(()),
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = super::schemas::IdToken),
        (status = 401, description = "Wrong username or password", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
async fn authenticate(
    State(state): State<AppState>,
    ApiJson(login): ApiJson<Login>,
) -> ApiResult<Json<Value>> {
    let remember = login.remember_me.is_some_and(FlexBool::value);
    let email = login.username.trim().to_ascii_lowercase();
    if let Some(throttle) = state.store.login_throttle(&email).await? {
        let wait_ms = throttle.locked_until_ms - now_ms();
        if wait_ms > 0 {
            return Err(ApiError::TooManyRequests {
                retry_after_secs: (wait_ms as u64).div_ceil(1000),
                detail: "too many failed logins for this username; try again later".into(),
            });
        }
    }
    let owner = state.store.owner_by_email(&email).await?;
    // Verify against a dummy hash when the owner is unknown, so timing does not reveal emails.
    let hash = owner
        .as_ref()
        .map(|o| o.password_hash.clone())
        .unwrap_or_else(dummy_hash);
    let password = login.password.clone();
    let verified = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(ApiError::internal)?;
    let Some(owner) = owner.filter(|_| verified) else {
        state.store.record_login_failure(&email).await?;
        return Err(ApiError::Unauthorized(
            "invalid username or password".into(),
        ));
    };
    state.store.clear_login_failures(&email).await?;
    let now = chrono::Utc::now().timestamp();
    let lifetime = if remember { 30 * 86_400 } else { 86_400 };
    let claims = Claims {
        sub: owner.id,
        email: owner.email,
        iat: now,
        exp: now + lifetime,
        iss: ISSUER.into(),
    };
    let token = encode(&Header::new(Algorithm::HS256), &claims, &state.jwt.encoding)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "id_token": token })))
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("not-a-real-password").unwrap_or_default())
        .clone()
}

pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("an API owner with email {0} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Creates an API owner (argon2id hash). Used by `furrow owner create` and the demo.
pub async fn create_owner(
    store: &Store,
    email: &str,
    password: &str,
) -> Result<String, OwnerError> {
    let email = email.trim().to_ascii_lowercase();
    if !email.contains('@') || email.len() > 254 {
        return Err(OwnerError::Invalid("email must be an email address"));
    }
    if password.len() < 8 {
        return Err(OwnerError::Invalid(
            "password must have at least 8 characters",
        ));
    }
    let hash = hash_password(password).map_err(|e| OwnerError::Hash(e.to_string()))?;
    let id = uuid::Uuid::new_v4().to_string();
    if store.create_owner(&id, &email, &hash).await? {
        Ok(id)
    } else {
        Err(OwnerError::Exists(email))
    }
}
