//! OAuth 2.0 against John Deere's (Okta) authorization server: authorization-code exchange with
//! optional PKCE, the refresh-token grant, and discovery from the well-known metadata.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::{DeereError, OAuthErrorBody, Result, TransientReason};
use crate::http::{retry_after, RetryPolicy};
use crate::observe::{observe, Observer};
use crate::pace::{Paced, SharedPacer};

/// The default issuer: John Deere's production authorization server.
pub const DEFAULT_ISSUER: &str = "https://signin.johndeere.com/oauth2/aus78tnlaysMraFhC1t7";

/// A bearer token for the platform API. Prints as `[REDACTED]`.
#[derive(Clone)]
pub struct AccessToken(SecretString);

/// A refresh token. Prints as `[REDACTED]`.
#[derive(Clone)]
pub struct RefreshToken(SecretString);

macro_rules! secret_newtype {
    ($name:ident) => {
        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }
            /// The clear value, for the one place that must send or encrypt it.
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}
secret_newtype!(AccessToken);
secret_newtype!(RefreshToken);

/// A parsed token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: AccessToken,
    pub token_type: String,
    pub expires_in: Option<Duration>,
    /// The *granted* scopes (order as the server sent them).
    pub scopes: Vec<String>,
    /// Present only when `offline_access` was granted; absent means "keep the old one".
    pub refresh_token: Option<RefreshToken>,
    pub id_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

impl TokenResponse {
    /// Parses a token endpoint body. The error never echoes the body: it holds secrets.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let raw: RawTokenResponse = serde_json::from_slice(body).map_err(|e| {
            DeereError::InvalidResponse(format!(
                "token response is not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        Ok(Self {
            access_token: AccessToken::new(raw.access_token),
            token_type: raw.token_type.unwrap_or_else(|| "Bearer".into()),
            expires_in: raw.expires_in.map(Duration::from_secs),
            scopes: raw
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            refresh_token: raw
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(RefreshToken::new),
            id_token: raw.id_token.map(SecretString::from),
        })
    }
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_verifier(verifier: String) -> Self {
        let challenge = s256_challenge(&verifier);
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }
}

/// `BASE64URL(SHA256(verifier))`, RFC 7636 §4.2.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The subset of `/.well-known/oauth-authorization-server` we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// An OAuth client for one application (client key + secret).
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    authorization_endpoint: Url,
    token_endpoint: Url,
    revocation_endpoint: Url,
    client_id: String,
    client_secret: SecretString,
    retry: RetryPolicy,
    observer: Option<Observer>,
    pacer: Paced,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

fn join_issuer(issuer: &Url, suffix: &str) -> Result<Url> {
    let base = issuer.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}/{suffix}"))
        .map_err(|e| DeereError::InvalidUrl(format!("issuer {base}: {e}")))
}

impl OAuthClient {
    /// Endpoints derived from the issuer the way Okta lays them out: `{issuer}/v1/token`, ...
    pub fn new(
        http: reqwest::Client,
        issuer: &Url,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Result<Self> {
        Ok(Self {
            http,
            authorization_endpoint: join_issuer(issuer, "v1/authorize")?,
            token_endpoint: join_issuer(issuer, "v1/token")?,
            revocation_endpoint: join_issuer(issuer, "v1/revoke")?,
            client_id: client_id.into(),
            client_secret,
            retry: RetryPolicy::default(),
            observer: None,
            pacer: Paced::default(),
        })
    }

    /// Reads the endpoints from `{issuer}/.well-known/oauth-authorization-server`.
    pub async fn discover(
        http: reqwest::Client,
        issuer: &Url,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Result<Self> {
        let metadata = fetch_metadata(&http, issuer).await?;
        let mut client = Self::new(http, issuer, client_id, client_secret)?;
        client.authorization_endpoint = metadata.authorization_endpoint;
        client.token_endpoint = metadata.token_endpoint;
        if let Some(revocation) = metadata.revocation_endpoint {
            client.revocation_endpoint = revocation;
        }
        Ok(client)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Draws every token call (retries too) from `pacer`'s budget.
    pub fn with_pacer(mut self, pacer: SharedPacer) -> Self {
        self.pacer = Paced(Some(pacer));
        self
    }

    /// Sees every token call (see [`crate::observe`]).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    /// The URL to send a grower's browser to.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        scopes: &[&str],
        state: &str,
        pkce: Option<&Pkce>,
    ) -> Url {
        let mut url = self.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("response_type", "code")
                .append_pair("scope", &scopes.join(" "))
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state);
            if let Some(pkce) = pkce {
                q.append_pair("code_challenge", &pkce.challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url
    }

    /// Exchanges an authorization code.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&SecretString>,
    ) -> Result<TokenResponse> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = pkce_verifier {
            form.push(("code_verifier", verifier.expose_secret()));
        }
        self.token_call(&form).await
    }

    /// The refresh-token grant. Whatever `refresh_token` comes back must be stored before the
    /// access token is used (the server may rotate it).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenResponse> {
        self.token_call(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ])
        .await
    }

    /// Revokes a refresh token (RFC 7009).
    pub async fn revoke(&self, refresh_token: &RefreshToken) -> Result<()> {
        self.pacer.acquire().await;
        let response = self
            .http
            .post(self.revocation_endpoint.clone())
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[
                ("token", refresh_token.expose()),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await
            .map_err(DeereError::transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(DeereError::transport)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(oauth_error(status.as_u16(), None, &body))
        }
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let mut retry = 0;
        loop {
            self.pacer.acquire().await;
            let err = match self.token_attempt(form).await {
                Ok(tokens) => return Ok(tokens),
                Err(err) => err,
            };
            self.pacer.refused(&err).await;
            match self.retry.delay_for(retry, &err) {
                Some(delay) if retry_is_safe(&err) => {
                    tracing::debug!(error = %err, ?delay, "token call failed; retrying");
                    crate::observe::record_rate_limit_wait(&err, delay);
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => return Err(err),
            }
        }
    }

    async fn token_attempt(&self, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let url = &self.token_endpoint;
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(url.clone())
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await;
        crate::observe::record_request(
            "token",
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                let err = DeereError::transport(err);
                observe(
                    self.observer.as_ref(),
                    "POST",
                    url,
                    None,
                    None,
                    b"",
                    Some(err.to_string()),
                );
                return Err(err);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let retry_after = retry_after(&headers);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => {
                let err = DeereError::transport(err);
                observe(
                    self.observer.as_ref(),
                    "POST",
                    url,
                    Some(status.as_u16()),
                    Some(&headers),
                    b"",
                    Some(err.to_string()),
                );
                return Err(err);
            }
        };
        observe(
            self.observer.as_ref(),
            "POST",
            url,
            Some(status.as_u16()),
            Some(&headers),
            &body,
            None,
        );
        if status.is_success() {
            return TokenResponse::parse(&body);
        }
        Err(oauth_error(status.as_u16(), retry_after, &body))
    }
}

/// A refresh that reached the server may have consumed a rotating refresh token, so after a
/// timeout or a cut connection we must not replay it: only failures that prove the server did
/// not act (429, 5xx answered, connection never made) are retried here.
fn retry_is_safe(err: &DeereError) -> bool {
    match err {
        DeereError::RateLimited { .. } => true,
        DeereError::Transient { reason, .. } => !matches!(reason, TransientReason::Interrupted),
        _ => false,
    }
}

fn oauth_error(status: u16, retry_after: Option<Duration>, body: &[u8]) -> DeereError {
    if status == 429 {
        return DeereError::RateLimited { retry_after };
    }
    if status >= 500 {
        return DeereError::server_error(status, "token endpoint unavailable");
    }
    let parsed: Option<OAuthErrorBody> = serde_json::from_slice(body).ok();
    let (code, description) = match parsed {
        Some(b) => (b.error, b.error_description.unwrap_or_default()),
        None => (String::new(), String::new()),
    };
    match (status, code.as_str()) {
        (_, "invalid_grant") => DeereError::InvalidGrant { description },
        (_, "invalid_client") | (401, "") => DeereError::InvalidClient { description },
        _ => DeereError::OAuth {
            status,
            code,
            description,
        },
    }
}

/// Fetches the authorization server metadata.
pub async fn fetch_metadata(http: &reqwest::Client, issuer: &Url) -> Result<ServerMetadata> {
    let url = join_issuer(issuer, ".well-known/oauth-authorization-server")?;
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(DeereError::transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(DeereError::Http {
            status: status.as_u16(),
            message: "authorization server metadata unavailable".into(),
        });
    }
    response
        .json()
        .await
        .map_err(|e| DeereError::InvalidResponse(format!("authorization server metadata: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_token_response() {
        let body = br#"{"token_type":"Bearer","expires_in":43200,"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzaW0iOnRydWV9.c2ln","scope":"ag2 ag1 offline_access ag3","refresh_token":"sim-rt-0001"}"#;
        let t = TokenResponse::parse(body).unwrap();
        assert_eq!(t.expires_in, Some(Duration::from_secs(43200)));
        assert_eq!(t.scopes, ["ag2", "ag1", "offline_access", "ag3"]);
        assert_eq!(t.refresh_token.as_ref().unwrap().expose(), "sim-rt-0001");
        assert!(t.id_token.is_none());
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("sim-rt-0001") && !debug.contains("eyJhbGci"),
            "{debug}"
        );
    }

    #[test]
    fn token_response_without_refresh_token_keeps_none() {
        let t = TokenResponse::parse(
            br#"{"access_token":"a","expires_in":10,"scope":"ag1","id_token":"x.y.z"}"#,
        )
        .unwrap();
        assert!(t.refresh_token.is_none());
        assert!(t.id_token.is_some());
    }

    #[test]
    fn bad_token_body_error_does_not_echo_secrets() {
        let err = TokenResponse::parse(br#"{"refresh_token":"secret-rt"}"#).unwrap_err();
        assert!(!err.to_string().contains("secret-rt"));
    }

    #[test]
    fn classifies_oauth_errors() {
        let e = oauth_error(400, None, br#"{"error":"invalid_grant","error_description":"The refresh token is invalid or expired."}"#);
        assert!(matches!(e, DeereError::InvalidGrant { .. }));
        let e = oauth_error(401, None, br#"{"error":"invalid_client"}"#);
        assert!(matches!(e, DeereError::InvalidClient { .. }));
        let e = oauth_error(429, Some(Duration::from_secs(2)), b"");
        assert!(
            matches!(e, DeereError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2))
        );
        assert!(oauth_error(503, None, b"").is_transient());
        let e = oauth_error(400, None, br#"{"error":"invalid_request"}"#);
        assert!(matches!(e, DeereError::OAuth { status: 400, .. }));
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
