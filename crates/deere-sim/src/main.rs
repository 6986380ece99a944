//! `deere-sim`: runs the John Deere simulator as a standalone server.

use std::net::SocketAddr;

use clap::Parser;
use deere_sim::{SimConfig, WorldSize};

#[derive(Parser, Debug)]
#[command(version, about = "A John Deere Operations Center simulator")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "DEERE_SIM_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Seed of the generated world.
    #[arg(long, env = "DEERE_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Growers in the generated world.
    #[arg(long, default_value_t = 2)]
    growers: u32,
    /// Fields per organization.
    #[arg(long, default_value_t = 3)]
    fields_per_org: u32,
    /// Client key of the pre-registered app.
    #[arg(long, env = "DEERE_SIM_CLIENT_KEY", default_value = "sim-client")]
    client_key: String,
    /// Client secret of the pre-registered app.
    #[arg(long, env = "DEERE_SIM_CLIENT_SECRET", default_value = "sim-secret")]
    client_secret: String,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Requests per second per client key (unlimited when absent).
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Rotate refresh tokens on every refresh.
    #[arg(long)]
    rotate_refresh_tokens: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = SimConfig {
        seed: args.seed,
        world: WorldSize {
            growers: args.growers,
            fields_per_org: args.fields_per_org,
            ..WorldSize::default()
        },
        client_key: args.client_key,
        client_secret: args.client_secret,
        ..SimConfig::default()
    };
    config.settings.latency_ms = args.latency_ms;
    config.settings.rate_limit_per_sec = args.rate_limit;
    config.settings.rotate_refresh_tokens = args.rotate_refresh_tokens;
    let running = deere_sim::start(config, args.listen).await?;
    println!("deere-sim listening on {}", running.root_url());
    println!("  issuer:   {}", running.issuer_url());
    println!("  platform: {}", running.platform_url());
    println!("  admin:    {}/__admin/world", running.root_url());
    let sim = running.sim.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = running.wait() => {},
    }
    drop(sim);
    Ok(())
}
