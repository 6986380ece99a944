//! The `furrow` command: serve, demo, sim, owner, migrate, keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use furrow::config::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "furrow",
    version,
    about = "Self-hosted, Leaf-compatible John Deere connector"
)]
struct Cli {
    /// TOML config file (keys as in the README's settings table); env vars override it.
    #[arg(long, global = true, env = "FURROW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API and the background engine.
    Serve,
    /// A first look: the John Deere simulator, furrow wired to it, a demo owner, printed curls.
    Demo,
    /// Run only the built-in John Deere simulator.
    Sim {
        #[arg(long, env = "FURROW_SIM_LISTEN", default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Manage API owners.
    Owner {
        #[command(subcommand)]
        command: OwnerCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Print the API's OpenAPI 3.1 description (as served at /openapi.json) and exit.
    Openapi,
    /// Manage the master keys that encrypt secrets at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
enum OwnerCommand {
    /// Create an API owner.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, env = "FURROW_OWNER_PASSWORD")]
        password: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Add a new master key to the key file and re-encrypt every secret with it (servers keep
    /// running; they pick the new key up from the key file).
    Rotate,
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("furrow: {message}");
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    // Read before the settings: their own errors must be logged in the chosen format.
    match std::env::var("FURROW_LOG_FORMAT").as_deref() {
        Ok("json") => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        Ok("text") | Err(_) => logs.init(),
        Ok(other) => fail(format!(
            "FURROW_LOG_FORMAT must be text or json, not {other:?}"
        )),
    }
    let cli = Cli::parse();
    let settings =
        || Settings::load(cli.config.as_deref(), std::env::vars()).unwrap_or_else(|e| fail(e));
    match &cli.command {
        Command::Serve => {
            let settings = settings();
            tracing::info!(?settings, "starting");
            let running = furrow::app::start(settings)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("furrow listening on {}", running.base_url());
            running.until_signal().await;
        }
        Command::Demo => furrow::demo::run(settings())
            .await
            .unwrap_or_else(|e| fail(e)),
        Command::Sim { listen, seed } => {
            let config = deere_sim::SimConfig {
                seed: *seed,
                ..deere_sim::SimConfig::default()
            };
            let running = deere_sim::start(config, *listen)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("John Deere simulator listening on {}", running.root_url());
            println!("  issuer:   {}", running.issuer_url());
            println!("  platform: {}", running.platform_url());
            println!("  world:    curl {}/__admin/world", running.root_url());
            let _ = tokio::signal::ctrl_c().await;
        }
        Command::Owner {
            command: OwnerCommand::Create { email, password },
        } => {
            let state = furrow::app::AppState::build(settings())
                .await
                .unwrap_or_else(|e| fail(e));
            let id = furrow::api::auth::create_owner(&state.store, email, password)
                .await
                .unwrap_or_else(|e| fail(e));
            println!("created API owner {email} ({id})");
        }
        Command::Openapi => match furrow::api::openapi().to_pretty_json() {
            Ok(text) => println!("{text}"),
            Err(e) => fail(e),
        },
        Command::Migrate => {
            furrow::app::AppState::build(settings())
                .await
                .unwrap_or_else(|e| fail(e));
            println!("database is up to date");
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let settings = settings();
            let state = furrow::app::AppState::build(settings.clone())
                .await
                .unwrap_or_else(|e| fail(e));
            let path = settings.data_dir.join(furrow::crypto::KEY_FILE);
            furrow::crypto::append_key(&path, &furrow::crypto::generate_key())
                .unwrap_or_else(|e| fail(e));
            state.keyring.reload().unwrap_or_else(|e| fail(e));
            let n = furrow::app::rewrap_all(&state.store, &state.keyring)
                .await
                .unwrap_or_else(|e| fail(e));
            println!(
                "new key {} added to {}; {n} secrets re-encrypted",
                state.keyring.current_key_id(),
                path.display()
            );
        }
    }
}
