//! furrow: a self-hosted, Leaf-compatible connector for John Deere Operations Center.
//!
//! This binary grows with the service; today it runs the built-in John Deere simulator
//! (`furrow sim`), which everything else is proven against.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "furrow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the built-in John Deere simulator (OAuth server, platform API, webhooks, admin API).
    Sim {
        /// Address to listen on.
        #[arg(long, env = "FURROW_SIM_LISTEN", default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Seed of the generated world.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Sim { listen, seed } => {
            let config = deere_sim::SimConfig {
                seed,
                ..deere_sim::SimConfig::default()
            };
            let running = deere_sim::start(config, listen).await?;
            println!("John Deere simulator listening on {}", running.root_url());
            println!("  issuer:   {}", running.issuer_url());
            println!("  platform: {}", running.platform_url());
            println!("  world:    curl {}/__admin/world", running.root_url());
            println!(
                "  tokens:   curl -X POST {}/__admin/tokens -H 'content-type: application/json' -d '{{\"userName\":\"grower001\"}}'",
                running.root_url()
            );
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = running.wait() => {},
            }
            Ok(())
        }
    }
}
