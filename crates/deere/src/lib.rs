//! A client for John Deere's Operations Center.
//!
//! - [`oauth`]: the token endpoint (authorization code with PKCE, refresh), discovery.
//! - [`api`]: the platform API; collections are read by following `nextPage` links, never by
//!   computing offsets, and conditionally with `x-deere-signature`.
//! - [`models`]: lenient typed resources.
//!
//! Pacing: a [`Pacer`] given to the clients is asked before every request (a shared budget).
//! Retries: 429 honours `Retry-After`; 5xx and network failures back off exponentially with
//! jitter; 400/401/403/404 are never retried. Tokens are wrapped so they never print.
//! This crate knows nothing of furrow.

pub mod api;
pub mod error;
pub mod http;
pub mod models;
pub mod oauth;
pub mod observe;
pub mod pace;

pub use api::{
    largest_page, ApiClient, Download, Environment, ExportPolling, Listing, MapImage, Pager,
    ShapefileExport,
};
pub use error::{DeereError, ForbiddenKind, Result, TransientReason};
pub use http::{HttpSettings, RetryPolicy};
pub use oauth::{AccessToken, OAuthClient, Pkce, RefreshToken, TokenResponse};
pub use observe::{Exchange, Observer};
pub use pace::{Pacer, SharedPacer};
