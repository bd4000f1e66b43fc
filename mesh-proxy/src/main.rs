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
        /// Worker threads (default: the number of CPUs); 1 runs a
        /// current-thread runtime.
        #[arg(long)]
        threads: Option<usize>,
        /// The DNS server for `resolution: DNS` services (default: /etc/resolv.conf's).
        #[arg(long, value_name = "ADDR:PORT")]
        dns: Option<std::net::SocketAddr>,
        /// The largest request head accepted, in KiB (Envoy's `max_request_headers_kb`); 431 beyond.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=8192))]
        max_request_headers_kb: u32,
        /// What capture listeners do with traffic no service claims:
        /// `allow-any` passes it through (Istio's default), `registry-only`
        /// refuses it.
        #[arg(long, default_value = "allow-any")]
        outbound_policy: mesh_proxy::OutboundPolicy,
        /// How long a client may take to send a request head before its
        /// connection is closed (slowloris guard).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        header_read_timeout: std::time::Duration,
        /// How long an HTTP/1 keep-alive connection may sit idle between
        /// requests (Envoy's `idle_timeout`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        idle_timeout: std::time::Duration,
        /// Connections each listener serves at once; more are closed on accept.
        #[arg(long, default_value_t = mesh_proxy::MAX_CONNECTIONS, value_parser = clap::value_parser!(usize))]
        max_connections: usize,
    },
    /// Runs the whole mesh on this machine for ten seconds and shows what it did.
    Demo {
        /// Leave the sidecars running afterwards (until Ctrl-C).
        #[arg(long)]
        keep_running: bool,
        /// Seconds of traffic per phase (there are two).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Creates a development CA or issues workload certificates.
    Certs {
        #[command(subcommand)]
        action: Certs,
    },
    /// Installs (or removes) the NAT rules that capture this network
    /// namespace's TCP for the sidecar, like Istio's `istio-iptables`.
    Iptables {
        /// Where outbound TCP is redirected.
        #[arg(long, default_value_t = mesh_proxy::iptables::OUTBOUND_CAPTURE_PORT)]
        outbound_port: u16,
        /// Where inbound TCP is redirected.
        #[arg(long, default_value_t = mesh_proxy::iptables::INBOUND_CAPTURE_PORT)]
        inbound_port: u16,
        /// The proxy's user ID: its connections are not captured.
        #[arg(long, default_value_t = mesh_proxy::iptables::PROXY_UID)]
        proxy_uid: u32,
        /// The proxy's group ID: its connections are not captured.
        #[arg(long, default_value_t = mesh_proxy::iptables::PROXY_UID)]
        proxy_gid: u32,
        /// Inbound ports not to capture (comma separated).
        #[arg(long, value_delimiter = ',')]
        exclude_inbound_ports: Vec<u16>,
        /// Outbound ports not to capture (comma separated).
        #[arg(long, value_delimiter = ',')]
        exclude_outbound_ports: Vec<u16>,
        /// The admin port, never captured.
        #[arg(long, default_value_t = 15000)]
        admin_port: u16,
        /// Also install the rules for IPv6 (ip6tables).
        #[arg(long)]
        ipv6: bool,
        /// Print the rules instead of installing them.
        #[arg(long)]
        dry_run: bool,
        /// Remove the rules a previous run installed.
        #[arg(long)]
        cleanup: bool,
    },
    /// Checks config files as `run` would load them.
    Validate {
        /// Multi-document YAML files of Istio kinds, loaded as one config.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Certs {
    /// Creates a CA: writes `ca.pem` and `ca-key.pem` to DIR.
    Ca {
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// The trust domain of the SPIFFE IDs it issues.
        #[arg(long, default_value = mesh_tls::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// Issues a workload certificate: writes `ca.pem`, `cert.pem`, `key.pem`.
    Issue {
        /// The CA's directory (`ca.pem`, `ca-key.pem`).
        #[arg(long)]
        ca: PathBuf,
        /// The workload's SPIFFE ID, such as spiffe://cluster.local/ns/default/sa/web.
        #[arg(long)]
        id: String,
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid (Istio's default: 24h).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

fn certs(action: Certs) -> Result<(), mesh_core::BoxError> {
    match action {
        Certs::Ca { out, trust_domain } => {
            mesh_tls::DevCa::new(&trust_domain)?.write(&out)?;
            eprintln!(
                "mesh-proxy: CA for trust domain {trust_domain} written to {}",
                out.display()
            );
        }
        Certs::Issue { ca, id, out, ttl } => {
            let id: mesh_tls::SpiffeId = id.parse()?;
            mesh_tls::DevCa::load(&ca)?.issue(&id, ttl)?.write(&out)?;
            eprintln!(
                "mesh-proxy: certificate for {id} (valid {}) written to {}",
                humantime::format_duration(ttl),
                out.display()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Demo {
            keep_running,
            seconds,
        } => {
            init_tracing();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("mesh-proxy: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let phase = std::time::Duration::from_secs_f64(seconds.clamp(0.1, 3600.0));
            match rt.block_on(mesh_proxy::demo(phase, keep_running)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mesh-proxy demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Iptables {
            outbound_port,
            inbound_port,
            proxy_uid,
            proxy_gid,
            exclude_inbound_ports,
            exclude_outbound_ports,
            admin_port,
            ipv6,
            dry_run,
            cleanup,
        } => {
            use mesh_proxy::iptables::{CaptureRules, Family, cleanup as remove, cleanup_script};
            let families: &[Family] = if ipv6 {
                &[Family::V4, Family::V6]
            } else {
                &[Family::V4]
            };
            let rules = CaptureRules {
                outbound_port,
                inbound_port,
                proxy_uids: vec![proxy_uid],
                proxy_gids: vec![proxy_gid],
                exclude_inbound_ports,
                exclude_outbound_ports,
                admin_port,
            };
            let result = match (dry_run, cleanup) {
                (true, true) => {
                    families
                        .iter()
                        .for_each(|&f| print!("{}", cleanup_script(f)));
                    Ok(())
                }
                (true, false) => {
                    print!("{}", rules.dry_run(families));
                    Ok(())
                }
                (false, true) => families.iter().try_for_each(|&f| remove(f)),
                (false, false) => rules.install(families),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mesh-proxy iptables: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs { action } => match certs(action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mesh-proxy: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            configs,
            admin,
            identity,
            threads,
            dns,
            max_request_headers_kb,
            outbound_policy,
            header_read_timeout,
            idle_timeout,
            max_connections,
        } => {
            init_tracing();
            let workers = threads
                .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
                .unwrap_or(1)
                .max(1);
            // One worker: a current-thread runtime, as linkerd2-proxy runs on
            // one core. Its tasks wake each other without the work-stealing
            // scheduler's atomics and cross-thread notifications.
            let mut rt = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut rt = tokio::runtime::Builder::new_multi_thread();
                rt.worker_threads(workers);
                rt
            };
            rt.enable_all();
            let rt = match rt.build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("mesh-proxy: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = mesh_proxy::RunOptions {
                admin,
                identity,
                dns,
                max_header_bytes: max_request_headers_kb as usize * 1024,
                outbound_policy,
                header_read_timeout,
                idle_timeout,
                max_connections,
                ..mesh_proxy::RunOptions::new(configs)
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
