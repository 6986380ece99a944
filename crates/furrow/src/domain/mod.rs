//! Rules that do not depend on HTTP or storage.

pub mod credential;
pub mod redact;
