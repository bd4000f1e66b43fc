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
    }
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
