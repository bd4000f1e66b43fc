//! `mesh-proxy`: the sidecar's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A service-mesh sidecar that reads Istio's YAML.
#[derive(Debug, Parser)]
#[command(name = "mesh-proxy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the sidecar.
    Run {
        /// Config files (multi-document YAML of Istio kinds).
        #[arg(short = 'c', long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// The admin server's address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: std::net::SocketAddr,
        /// A directory with `ca.pem`, `cert.pem` and `key.pem`.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// Worker threads (default: the number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Checks config files as `run` would load them.
    Validate {
        /// Multi-document YAML files of Istio kinds, loaded as one config.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run {
            configs,
            admin,
            identity,
            threads,
        } => {
            init_tracing();
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            rt.enable_all();
            if let Some(n) = threads {
                rt.worker_threads(n.max(1));
            }
            let rt = match rt.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("mesh-proxy: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = mesh_proxy::RunOptions {
                configs,
                admin,
                identity,
                drain: std::time::Duration::from_secs(5),
            };
            match rt.block_on(mesh_proxy::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mesh-proxy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let loaded = mesh_proxy::config::load(files);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    if loaded.config.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
