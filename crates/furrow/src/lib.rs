//! furrow: a self-hosted, Leaf-compatible connector for John Deere Operations Center.
//!
//! Data flows one way: API request → domain rules → store; engine → job → `deere` client →
//! store. Handlers are thin; the engine never calls the HTTP layer.

pub mod api;
pub mod app;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
pub mod files;
pub mod metrics;
pub mod onboarding;
pub mod outbound;
pub mod request_context;
pub mod store;
pub mod sync;

/// mimalloc rather than the system's allocator: the sync engine allocates and frees small
/// buffers (pages of JSON, rows, requests) from many threads at once, where glibc's malloc
/// spent a sixth of the workers' time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
