//! The credential status machine and the values a credential is made of.

use std::fmt;

/// Health of a John Deere credential, as Leaf reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Tokens refresh and the platform answers.
    Ok,
    /// John Deere rejected the refresh token or the client (revoked, expired, wrong environment
    /// or key). furrow stops calling John Deere until new credentials are posted.
    Unauthenticated,
    /// The token works but lacks scopes or API access the sync needs.
    MissingPermission,
    /// John Deere is unreachable, failing (5xx) or rate limiting; retried with backoff.
    TemporarilyUnavailable,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::MissingPermission => "MISSING_PERMISSION",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "OK" => Some(Self::Ok),
            "UNAUTHENTICATED" => Some(Self::Unauthenticated),
            "MISSING_PERMISSION" => Some(Self::MissingPermission),
            "TEMPORARILY_UNAVAILABLE" => Some(Self::TemporarilyUnavailable),
            _ => None,
        }
    }
}

impl fmt::Display for CredentialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `clientEnvironment`: which John Deere API host the app is approved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEnvironment {
    Stage,
    Production,
}

impl ClientEnvironment {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "STAGE" => Some(Self::Stage),
            "PRODUCTION" => Some(Self::Production),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stage => "STAGE",
            Self::Production => "PRODUCTION",
        }
    }
}

/// Scopes the sync needs: fields and boundaries (`ag1`), field operations (`ag2`), machine
/// files (`files`), and `offline_access` so a refresh token keeps coming.
pub const REQUIRED_SCOPES: [&str; 4] = ["ag1", "ag2", "files", "offline_access"];

/// The required scopes a grant lacks.
pub fn missing_scopes(granted: &[String]) -> Vec<&'static str> {
    REQUIRED_SCOPES
        .iter()
        .copied()
        .filter(|needed| !granted.iter().any(|g| g == needed))
        .collect()
}

/// What a token grant means for the status.
pub fn status_for_scopes(granted: &[String]) -> (CredentialStatus, Option<String>) {
    let missing = missing_scopes(granted);
    if missing.is_empty() {
        (CredentialStatus::Ok, None)
    } else {
        (
            CredentialStatus::MissingPermission,
            Some(format!("the token lacks the scopes {}", missing.join(", "))),
        )
    }
}

/// What a John Deere error means for the status.
pub fn status_for_error(error: &deere::DeereError) -> (CredentialStatus, String) {
    use deere::DeereError as E;
    let status = match error {
        E::InvalidGrant { .. } | E::InvalidClient { .. } | E::Unauthorized { .. } => {
            CredentialStatus::Unauthenticated
        }
        E::Forbidden { .. } | E::RequiredCustomerAction { .. } => {
            CredentialStatus::MissingPermission
        }
        _ => CredentialStatus::TemporarilyUnavailable,
    };
    (status, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            CredentialStatus::Ok,
            CredentialStatus::Unauthenticated,
            CredentialStatus::MissingPermission,
            CredentialStatus::TemporarilyUnavailable,
        ] {
            assert_eq!(CredentialStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ClientEnvironment::parse("stage"), None);
        assert_eq!(
            ClientEnvironment::parse("PRODUCTION"),
            Some(ClientEnvironment::Production)
        );
    }

    #[test]
    fn scopes_decide_missing_permission() {
        let all: Vec<String> = ["ag1", "ag2", "ag3", "files", "offline_access"]
            .map(String::from)
            .to_vec();
        assert_eq!(status_for_scopes(&all).0, CredentialStatus::Ok);
        let few: Vec<String> = ["ag1", "offline_access"].map(String::from).to_vec();
        let (status, reason) = status_for_scopes(&few);
        assert_eq!(status, CredentialStatus::MissingPermission);
        assert!(reason.unwrap().contains("ag2, files"));
    }

    #[test]
    fn errors_decide_status() {
        let e = deere::DeereError::InvalidGrant {
            description: String::new(),
        };
        assert_eq!(status_for_error(&e).0, CredentialStatus::Unauthenticated);
        let e = deere::DeereError::RateLimited { retry_after: None };
        assert_eq!(
            status_for_error(&e).0,
            CredentialStatus::TemporarilyUnavailable
        );
    }
}
