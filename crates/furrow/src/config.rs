//! Typed settings: defaults < config file (TOML) < `FURROW_*` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every setting, with its default. The environment variable of a key is `FURROW_` + the key in
/// upper case (`listen` → `FURROW_LISTEN`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the SQLite database, the key file and (by default) machine files live.
    pub data_dir: PathBuf,
    /// Machine files in an S3-compatible bucket: `s3://bucket[/prefix]` (credentials, region
    /// and endpoint from the `AWS_*` environment variables). Unset: `{data_dir}/files`.
    pub file_store_url: Option<String>,
    /// `sqlite://…` or `postgres://…`; default: `furrow.db` in the data dir.
    pub database_url: Option<String>,
    /// PostgreSQL only: connections of their own for bulk sync work (the parts of an account
    /// syncing for more than 5 s). Few leave the database server's CPU to everything else (a
    /// grower just connected, API requests); a database across a network may want more.
    pub database_bulk_connections: u32,
    /// PostgreSQL only: connections of their own for work ahead (API requests, the rate
    /// budget's draws, the syncs of the growers connected last), so it never waits for a
    /// connection behind the sync's; more for an API that many clients read at once.
    pub database_ahead_connections: u32,
    /// How applications and John Deere reach this server (webhooks); default `http://{listen}`.
    pub public_url: Option<String>,
    /// Master key, base64 of 32 bytes. Absent: a key file in the data dir (made on first start).
    pub secret_key: Option<String>,
    /// John Deere's authorization server (issuer).
    pub deere_auth_url: String,
    /// Platform API for `clientEnvironment: STAGE`.
    pub deere_stage_api_url: String,
    /// Platform API for `clientEnvironment: PRODUCTION`.
    pub deere_production_api_url: String,
    /// Replace client secrets and tokens in credential responses with `********`.
    pub mask_secrets: bool,
    /// Time allowed for the token exchange made when credentials are posted.
    pub token_exchange_timeout_secs: u64,
    /// Refresh an access token this long before it expires.
    pub refresh_margin_secs: u64,
    /// Refresh at least this often even when the access token is still valid (keeps the
    /// refresh token, which dies after a year unused, hot).
    pub max_refresh_interval_secs: u64,
    /// How often a credential's health is re-checked against John Deere.
    pub health_check_interval_secs: u64,
    /// How often the engine looks for due work.
    pub engine_poll_ms: u64,
    /// How long a replica owns a job it claimed before another may take it over.
    pub lease_secs: u64,
    /// At shutdown, how long running jobs may take to finish; those still running are then
    /// stopped and their leases released, so another replica takes them at once.
    pub shutdown_grace_secs: u64,
    /// Credential events are deleted after this many days.
    pub event_retention_days: u64,
    /// Jobs one replica runs at once. Most of a sync's time is spent waiting for the client
    /// key's rate budget, which decides fairly between growers; slots only bound memory, so
    /// there are enough for many growers' syncs to wait on the budget together. New
    /// credentials' first sync runs have a few slots more of their own (see `sync::Wake`).
    pub engine_concurrency: usize,
    /// Scheduled re-sync of each credential's data (webhooks and manual syncs come sooner).
    pub sync_interval_secs: u64,
    /// Parts of one credential's sync (an organization's fields, or its files) worked on at
    /// once, across all replicas.
    pub sync_parts_per_credential: u64,
    /// Collections one sync part reads at once (an organization's fields' boundaries and
    /// operations), so one large account is read at the rate limit, not at John Deere's latency.
    pub sync_reads_per_part: u64,
    /// Machine files are downloaded in ranged requests of this many bytes.
    pub file_chunk_bytes: u64,
    /// First wait between polls of a field operation's shapefile export (John Deere: 5 s,
    /// doubling each poll).
    pub export_poll_ms: u64,
    /// Polls of one export before the attempt is given up (and retried later).
    pub export_max_polls: u64,
    /// Operations' machine data processed at once by one replica (slots of their own; 0: none).
    pub machine_data_concurrency: u64,
    /// Alert webhooks may point into furrow's own network (loopback, private, link-local…).
    /// Off by default; tests and the demo, whose receivers listen on loopback, turn it on.
    pub alert_allow_private_networks: bool,
    /// Comma-separated CIDR ranges alert webhooks may reach even though they are private.
    pub alert_allowed_networks: String,
    /// Multiplies Leaf's alert retry delays (1, 30, 60, 240 minutes); tests use a tiny value.
    pub alert_retry_scale: f64,
    /// Credential reads are served from memory for up to this long; writes on the same
    /// replica invalidate at once, other replicas' writes show within this time. 0 disables.
    pub credential_cache_ms: u64,
    /// Subscribe to John Deere's events (Data Subscription Service) for synced organizations,
    /// delivered to `{public_url}/api/deere/events`. Off: polling only.
    pub deere_webhooks: bool,
    /// When set, a John Deere delivery must carry exactly this `Authorization` header (the
    /// app's `authorizationHeaderValue` on `eventSubscriptionDelivery`).
    pub deere_webhook_authorization: Option<String>,
    /// John Deere requests per second per client key (the rate of the app's API usage
    /// agreement), shared by all replicas; furrow paces itself to it and slows down on 429s.
    /// 0: not paced (429s are only waited out).
    pub deere_rate_limit: f64,
    /// Rates for particular client keys, overriding `deere_rate_limit`: `key=rate,key2=rate`.
    pub deere_rate_limits: String,
    /// Address of the Prometheus `/metrics` endpoint (unauthenticated, so on its own address).
    /// Unset: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            data_dir: PathBuf::from("./furrow-data"),
            database_url: None,
            database_bulk_connections: crate::store::BULK_CONNECTIONS,
            database_ahead_connections: crate::store::AHEAD_CONNECTIONS,
            file_store_url: None,
            public_url: None,
            secret_key: None,
            deere_auth_url: deere::oauth::DEFAULT_ISSUER.into(),
            deere_stage_api_url: "https://sandboxapi.deere.com/platform".into(),
            deere_production_api_url: "https://partnerapi.deere.com/platform".into(),
            mask_secrets: false,
            token_exchange_timeout_secs: 15,
            refresh_margin_secs: 600,
            max_refresh_interval_secs: 86_400,
            health_check_interval_secs: 3_600,
            engine_poll_ms: 500,
            lease_secs: 120,
            shutdown_grace_secs: 10,
            event_retention_days: 30,
            engine_concurrency: 128,
            sync_interval_secs: 86_400,
            sync_parts_per_credential: 4,
            sync_reads_per_part: 32,
            file_chunk_bytes: 8 * 1024 * 1024,
            export_poll_ms: 5000,
            export_max_polls: 30,
            machine_data_concurrency: 2,
            alert_retry_scale: 1.0,
            alert_allow_private_networks: false,
            alert_allowed_networks: String::new(),
            credential_cache_ms: 1000,
            deere_webhooks: true,
            deere_webhook_authorization: None,
            deere_rate_limit: 100.0,
            deere_rate_limits: String::new(),
            metrics_listen: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_bulk_connections", &self.database_bulk_connections)
            .field(
                "database_ahead_connections",
                &self.database_ahead_connections,
            )
            .field("public_url", &self.public_url)
            .field("file_store_url", &self.file_store_url)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "[REDACTED]"),
            )
            .field("deere_auth_url", &self.deere_auth_url)
            .field("deere_stage_api_url", &self.deere_stage_api_url)
            .field("deere_production_api_url", &self.deere_production_api_url)
            .field("deere_webhooks", &self.deere_webhooks)
            .field("metrics_listen", &self.metrics_listen)
            .field("deere_rate_limit", &self.deere_rate_limit)
            .field("deere_rate_limits", &self.deere_rate_limits)
            .field(
                "deere_webhook_authorization",
                &self
                    .deere_webhook_authorization
                    .as_ref()
                    .map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// A database URL with its password hidden.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then the config file (when given), then `FURROW_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let defaults = serde_json::to_value(Settings::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let Value::Object(mut merged) = defaults.clone() else {
            unreachable!("settings serialize to an object")
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let as_json =
                serde_json::to_value(table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if let Value::Object(map) = as_json {
                merged.extend(map);
            }
        }
        let known: Map<String, Value> = match defaults {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        for (name, raw) in env {
            let Some(key) = name.strip_prefix("FURROW_").map(str::to_ascii_lowercase) else {
                continue;
            };
            let Some(default) = known.get(&key) else {
                continue; // FURROW_* variables that are not settings (e.g. FURROW_CONFIG, test knobs)
            };
            let value = match default {
                Value::Number(_) => serde_json::from_str::<Value>(raw.trim())
                    .ok()
                    .filter(Value::is_number)
                    .ok_or_else(|| ConfigError::Invalid(format!("{name} must be a number")))?,
                Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Value::Bool(true),
                    "false" | "0" | "no" => Value::Bool(false),
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "{name} must be true or false"
                        )))
                    }
                },
                _ if raw.is_empty() => Value::Null,
                _ => Value::String(raw),
            };
            merged.insert(key, value);
        }
        serde_json::from_value(Value::Object(merged))
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The database URL to use.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("furrow.db").display()
            )
        })
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("furrow-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("furrow.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmask_secrets = true\nlease_secs = 30\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            env(&[("FURROW_LEASE_SECS", "45"), ("HOME", "/x")]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert!(s.mask_secrets);
        assert_eq!(s.lease_secs, 45);
        assert_eq!(s.refresh_margin_secs, 600);
        assert!(s.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(Settings::load(None, env(&[("FURROW_LEASE_SECS", "soon")])).is_err());
        assert!(Settings::load(None, env(&[("FURROW_MASK_SECRETS", "maybe")])).is_err());
        assert!(Settings::load(None, env(&[("FURROW_LISTEN", "nowhere")])).is_err());
        let dir = std::env::temp_dir().join(format!("furrow-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("furrow.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(Settings::load(Some(&file), env(&[])).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let s = Settings::load(
            None,
            env(&[
                ("FURROW_SECRET_KEY", "c2VjcmV0"),
                ("FURROW_DATABASE_URL", "postgres://u:hunter2@localhost/db"),
            ]),
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("c2VjcmV0") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
