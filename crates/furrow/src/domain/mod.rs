//! Rules that do not depend on HTTP or storage.

pub mod budget;
pub mod config;
pub mod credential;
pub mod organization;
pub mod redact;
