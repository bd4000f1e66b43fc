//! `mesh-proxy run`: bind the listeners of the config, serve, reload the
//! config when its files change, and drain on shutdown.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::{HeaderName, Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use mesh_core::BoxError;
use mesh_core::context::PeerIdentity;
use mesh_tls::authz::{Action, AuthorizationLayer, AuthorizationPolicy, Operation, Rule, Source};
use mesh_tls::{CredentialStore, IdentityFiles, MtlsAcceptor, PeerAuthMode, PeerCertificate};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder};

use crate::access_log::AccessLog;
use crate::body::{self, Body};
use crate::capture::{self, Capture, OriginalDst, OutboundPolicy};
use crate::config::Config;
use crate::config::model::{self, Direction, MtlsMode};
use crate::dns::Resolver;
use crate::normalize::NormalizeRequest;
use crate::observe::{Observe, ObserveConfig};
use crate::proxy::{Outbound, Proxy};
use crate::server::ClientAddrs;
use crate::upstream::AddrPools;
use crate::{admin, config, server};

/// `x-forwarded-client-cert`.
const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// What `run` is given on the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Config files.
    pub configs: Vec<PathBuf>,
    /// The admin server's address.
    pub admin: SocketAddr,
    /// The directory of `ca.pem`, `cert.pem`, `key.pem`.
    pub identity: Option<PathBuf>,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain: Duration,
    /// How often config files are checked for changes.
    pub watch_interval: Duration,
    /// The DNS server for `resolution: DNS` services (default: the system's).
    pub dns: Option<SocketAddr>,
    /// The largest request head accepted (431 beyond; default 60 KiB).
    pub max_header_bytes: usize,
    /// What capture listeners do with traffic no service claims.
    pub outbound_policy: OutboundPolicy,
    /// How long a client may take to send a request head (default
    /// [`HEADER_READ_TIMEOUT`](crate::server::HEADER_READ_TIMEOUT), 10 s).
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 keep-alive connection may idle between requests
    /// (default [`IDLE_TIMEOUT`](crate::server::IDLE_TIMEOUT), 1 h).
    pub idle_timeout: Duration,
    /// Connections each listener serves at once (default
    /// [`MAX_CONNECTIONS`](crate::server::MAX_CONNECTIONS), 10,000).
    pub max_connections: usize,
}

impl RunOptions {
    /// Options for `configs` with the defaults of the command line.
    pub fn new(configs: Vec<PathBuf>) -> Self {
        RunOptions {
            configs,
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            identity: None,
            drain: Duration::from_secs(5),
            watch_interval: Duration::from_millis(500),
            dns: None,
            max_header_bytes: server::MAX_HEADER_BYTES,
            outbound_policy: OutboundPolicy::default(),
            header_read_timeout: server::HEADER_READ_TIMEOUT,
            idle_timeout: server::IDLE_TIMEOUT,
            max_connections: server::MAX_CONNECTIONS,
        }
    }
}

/// A proxy that is serving.
#[derive(Debug)]
pub struct Running {
    proxy: Arc<Proxy>,
    /// The admin server's address.
    pub admin: SocketAddr,
    /// Each listener's name and bound address.
    pub listeners: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    serving: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    access_log: Option<Arc<AccessLog>>,
}

impl Running {
    /// The address of the first listener whose name starts with `prefix`
    /// (`outbound`, `inbound`).
    pub fn listener(&self, prefix: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, a)| *a)
    }

    /// The proxy's state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Stops accepting, lets in-flight requests finish for up to `drain`,
    /// and stops.
    pub async fn shutdown(self, drain: Duration) {
        self.proxy.set_ready(false);
        let _ = self.shutdown.send(true);
        let drained =
            tokio::time::timeout(drain, futures_util::future::join_all(self.serving)).await;
        if drained.is_err() {
            eprintln!("mesh-proxy: drain deadline passed; closing remaining connections");
        }
        for task in self.background {
            task.abort();
        }
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }
}

/// Loads the workload identity from `dir` and keeps it fresh (files checked
/// every 5 s; a broken new file keeps the old certificate).
pub fn load_identity(dir: &std::path::Path) -> Result<(CredentialStore, JoinHandle<()>), BoxError> {
    let (store, reloader) = CredentialStore::watch(IdentityFiles::in_dir(dir))
        .map_err(|e| format!("cannot load the identity in {}: {e}", dir.display()))?;
    Ok((store, reloader.spawn(Duration::from_secs(5))))
}

/// How a proxy started with [`start`] runs.
#[derive(Debug)]
pub struct StartOptions {
    /// The admin server's address.
    pub admin: SocketAddr,
    /// The workload identity (mTLS).
    pub identity: Option<CredentialStore>,
    /// The resolver of `resolution: DNS` services.
    pub resolver: Resolver,
    /// Whether each request is logged as a JSON line on stdout.
    pub access_log: bool,
    /// The largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// What capture listeners do with traffic no service claims.
    pub outbound_policy: OutboundPolicy,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 keep-alive connection may idle between requests.
    pub idle_timeout: Duration,
    /// Connections each listener serves at once.
    pub max_connections: usize,
}

impl StartOptions {
    /// Options for an admin address, with no identity, the system resolver,
    /// the access log on and Envoy's 60 KiB header limit.
    pub fn new(admin: SocketAddr) -> Self {
        StartOptions {
            admin,
            identity: None,
            resolver: Resolver::system(),
            access_log: true,
            max_header_bytes: server::MAX_HEADER_BYTES,
            outbound_policy: OutboundPolicy::default(),
            header_read_timeout: server::HEADER_READ_TIMEOUT,
            idle_timeout: server::IDLE_TIMEOUT,
            max_connections: server::MAX_CONNECTIONS,
        }
    }
}

/// Starts serving `config` (the listeners bound, the admin server up).
pub async fn start(config: Config, options: StartOptions) -> Result<Running, BoxError> {
    let StartOptions {
        admin,
        identity,
        resolver,
        access_log,
        max_header_bytes,
        outbound_policy,
        header_read_timeout,
        idle_timeout,
        max_connections,
    } = options;
    let limits = server::Limits {
        max_header_bytes,
        header_read_timeout,
        idle_timeout,
        max_connections,
    };
    let listeners = config.listeners.clone();
    let mode = inbound_mode(&config, identity.is_some())?;
    let authz = authorization(&config);
    let proxy = Proxy::new(config, identity.clone(), resolver)?;
    let (shutdown_tx, shutdown) = watch::channel(false);

    let access_log = access_log.then(AccessLog::new);
    let admin_listener = TcpListener::bind(admin)
        .await
        .map_err(|e| format!("cannot bind the admin address {admin}: {e}"))?;
    let admin_addr = admin_listener.local_addr()?;
    let mut background = vec![tokio::spawn(admin::serve(admin_listener, proxy.clone()))];
    background.extend(access_log.as_ref().map(AccessLog::spawn_flusher));

    let acceptor = match (&identity, mode) {
        // A stalled or trickled handshake is the TLS form of slowloris: it
        // gets the same time as a request head.
        (Some(store), Some(mode)) => Some(
            MtlsAcceptor::new(store, mode)?
                .detect_timeout(header_read_timeout)
                .handshake_timeout(header_read_timeout),
        ),
        _ => None,
    };
    let own_id = identity.as_ref().map(|s| s.current().id().to_string());

    let capture = Arc::new(Capture {
        proxy: proxy.clone(),
        policy: outbound_policy,
        limits,
        access_log: access_log.clone(),
        refuse_opaque_inbound: !authz.is_empty(),
    });
    let mut serving = Vec::new();
    let mut bound = Vec::new();
    for l in &listeners {
        let tcp = TcpListener::bind(l.bind)
            .await
            .map_err(|e| format!("cannot bind listener {} on {}: {e}", l.name, l.bind))?;
        let addr = tcp.local_addr()?;
        proxy.add_listener(l.name.clone(), addr);
        bound.push((l.name.clone(), addr));
        let observe = Arc::new(ObserveConfig {
            metrics: proxy.metrics_handle(),
            reporter: match l.direction {
                Direction::Outbound => "source",
                Direction::Inbound => "destination",
            },
            access_log: access_log.clone(),
        });
        let task = match (l.direction, l.capture) {
            (Direction::Outbound, true) => {
                let outbound = Outbound::new(proxy.clone(), outbound_policy);
                tokio::spawn(capture::serve_outbound(
                    tcp,
                    capture.clone(),
                    Observe::new(NormalizeRequest::new(outbound), observe),
                    shutdown.clone(),
                ))
            }
            (Direction::Inbound, true) => {
                let inbound = inbound_service(None, own_id.clone(), authz.clone());
                tokio::spawn(capture::serve_inbound(
                    tcp,
                    acceptor.clone(),
                    capture.clone(),
                    Observe::new(NormalizeRequest::new(inbound), observe),
                    shutdown.clone(),
                ))
            }
            (Direction::Outbound, false) => {
                let outbound = Outbound::new(proxy.clone(), OutboundPolicy::RegistryOnly);
                tokio::spawn(server::serve(
                    tcp,
                    None,
                    Observe::new(NormalizeRequest::new(outbound), observe),
                    proxy.client_addrs(),
                    shutdown.clone(),
                    limits,
                ))
            }
            (Direction::Inbound, false) => {
                let app = l
                    .default_endpoint
                    .ok_or("an inbound listener needs a defaultEndpoint")?;
                let inbound = inbound_service(Some(app), own_id.clone(), authz.clone());
                tokio::spawn(server::serve(
                    tcp,
                    acceptor.clone(),
                    Observe::new(NormalizeRequest::new(inbound), observe),
                    ClientAddrs::never(),
                    shutdown.clone(),
                    limits,
                ))
            }
        };
        serving.push(task);
    }
    proxy.set_ready(true);
    background.shrink_to_fit();
    Ok(Running {
        proxy,
        admin: admin_addr,
        listeners: bound,
        shutdown: shutdown_tx,
        serving,
        background,
        access_log,
    })
}

/// Loads the config, serves it, reloads it on change or SIGHUP, and returns
/// when shut down (Ctrl-C or SIGTERM) and drained.
pub async fn run(options: RunOptions) -> Result<(), BoxError> {
    let loaded = config::load(&options.configs);
    for d in &loaded.diagnostics {
        eprintln!("mesh-proxy: {d}");
    }
    let Some(config) = loaded.config else {
        return Err("invalid config (errors above)".into());
    };
    if config.listeners.iter().any(|l| l.capture) && effective_uid() == Some(0) {
        // `mesh-proxy iptables` tells the proxy's traffic apart by its user:
        // as root, the proxy's own upstream connections would be captured
        // again.
        eprintln!(
            "mesh-proxy: warning: capture listeners while running as root; run the proxy as the user `mesh-proxy iptables --proxy-uid` excludes (1337 by default)"
        );
    }
    let mut identity_task = None;
    let identity = match &options.identity {
        Some(dir) => {
            let (store, task) = load_identity(dir)?;
            identity_task = Some(task);
            Some(store)
        }
        None => None,
    };
    let mut running = start(
        config,
        StartOptions {
            identity,
            resolver: options
                .dns
                .map_or_else(Resolver::system, Resolver::with_server),
            max_header_bytes: options.max_header_bytes,
            outbound_policy: options.outbound_policy,
            header_read_timeout: options.header_read_timeout,
            idle_timeout: options.idle_timeout,
            max_connections: options.max_connections,
            ..StartOptions::new(options.admin)
        },
    )
    .await?;
    eprintln!("mesh-proxy: admin listening on {}", running.admin);
    for (name, addr) in &running.listeners {
        eprintln!("mesh-proxy: listener {name} listening on {addr}");
    }
    running.background.extend(identity_task);
    running.background.push(tokio::spawn(watch_configs(
        options.configs.clone(),
        running.proxy.clone(),
        options.watch_interval,
    )));
    eprintln!("mesh-proxy: ready");

    shutdown_signal().await;
    eprintln!(
        "mesh-proxy: shutting down; draining for up to {:?}",
        options.drain
    );
    running.shutdown(options.drain).await;
    Ok(())
}

/// This process's effective user ID (Linux), from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The inbound mTLS mode: PeerAuthentication's, else Istio's default
/// PERMISSIVE when the proxy has an identity and plaintext when it has none.
fn inbound_mode(config: &Config, has_identity: bool) -> Result<Option<PeerAuthMode>, BoxError> {
    let serves_inbound = config
        .listeners
        .iter()
        .any(|l| l.direction == Direction::Inbound);
    match (config.peer_authentication, has_identity) {
        (Some(MtlsMode::Disable), _) => Ok(Some(PeerAuthMode::Disable)),
        (Some(MtlsMode::Strict), true) => Ok(Some(PeerAuthMode::Strict)),
        (Some(MtlsMode::Permissive) | None, true) => Ok(Some(PeerAuthMode::Permissive)),
        (Some(mode @ (MtlsMode::Strict | MtlsMode::Permissive)), false) if serves_inbound => Err(format!(
            "PeerAuthentication mode {mode:?} needs the proxy's identity: start it with --identity DIR (ca.pem, cert.pem, key.pem)"
        )
        .into()),
        (_, false) => Ok(None),
    }
}

/// The AuthorizationPolicies, in mesh-tls's form.
fn authorization(config: &Config) -> Vec<AuthorizationPolicy> {
    config
        .authorization
        .iter()
        .map(|p| AuthorizationPolicy {
            name: p.name.clone(),
            action: match p.action {
                model::AuthzAction::Allow => Action::Allow,
                model::AuthzAction::Deny => Action::Deny,
            },
            rules: p
                .rules
                .iter()
                .map(|r| Rule {
                    from: r
                        .from
                        .iter()
                        .map(|s| Source {
                            principals: s.principals.clone(),
                            ..Source::default()
                        })
                        .collect(),
                    to: r
                        .to
                        .iter()
                        .map(|o| Operation {
                            paths: o.paths.clone(),
                            methods: o.methods.clone(),
                            ..Operation::default()
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// Envoy's `x-forwarded-client-cert` for a caller: `By=<us>;Hash=<sha256>;URI=<caller>`.
fn xfcc(own: &str, req: &Request<Body>) -> Option<HeaderValue> {
    let caller = req.extensions().get::<PeerIdentity>()?;
    let hash = req.extensions().get::<PeerCertificate>()?;
    HeaderValue::try_from(format!(
        "By={own};Hash={};URI={}",
        hash.0.to_hex(),
        caller.as_str()
    ))
    .ok()
}

/// Removes the mesh's control headers (`x-envoy-*`, `x-mesh-*`) a caller
/// sent: they steer or describe proxies (retries, timeouts, response flags),
/// and an app behind the inbound listener must not take a caller's word for
/// them (Envoy sanitises the same family from untrusted peers).
fn strip_control_headers(headers: &mut http::HeaderMap) {
    let control = |name: &HeaderName| {
        let n = name.as_str();
        n.starts_with("x-envoy-") || n.starts_with("x-mesh-")
    };
    if !headers.keys().any(control) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| control(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// The inbound path: authorization, the caller's identity in
/// `x-forwarded-client-cert`, then the local app.
fn inbound_service(
    app: Option<SocketAddr>,
    own_id: Option<String>,
    authz: Vec<AuthorizationPolicy>,
) -> BoxCloneSyncService<Request<Body>, Response<Body>, BoxError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(crate::tcp::CONNECT_TIMEOUT));
    // hyper-util's default: idle connections to the app kept 90 s.
    let pools = AddrPools::new(connector, Duration::from_secs(90));
    // A fixed app address has one pool, taken once rather than looked up
    // per request.
    let app_pool = app.map(|app| pools.get(app));
    let forward = tower::service_fn(move |mut req: Request<Body>| {
        // Only the handshake tells who called: drop what the caller claims.
        req.headers_mut().remove(XFCC);
        strip_control_headers(req.headers_mut());
        if let Some(own) = &own_id
            && let Some(value) = xfcc(own, &req)
        {
            req.headers_mut().insert(XFCC, value);
        }
        // A captured connection goes to the app at the port it was sent to.
        let pool = match &app_pool {
            Some(pool) => Some(pool.clone()),
            None => req
                .extensions()
                .get::<OriginalDst>()
                .map(|d| pools.get(capture::app_address(d.0))),
        };
        async move {
            let pool = pool.ok_or("an inbound request without an app address")?;
            crate::cluster::forward_plain(&pool, req).await
        }
    });
    if authz.is_empty() {
        return BoxCloneSyncService::new(forward);
    }
    let authorized = AuthorizationLayer::new(authz).layer(forward);
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|res: Response<_>| res.map(body::boxed))
            .map_err(Into::<BoxError>::into)
            .service(authorized),
    )
}

/// A fingerprint of the config files' contents (None for a missing file).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<u64>> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f).ok().map(|bytes| {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            })
        })
        .collect()
}

/// Watches the config files (rewritten in place or replaced by a rename)
/// and reloads on a change, once a burst of writes has settled, or on SIGHUP.
///
/// SIGHUP is taken over here, before the returned future first runs (and so
/// before `run` says it is ready): a SIGHUP sent right after would otherwise
/// hit the default action and end the process.
fn watch_configs(
    files: Vec<PathBuf>,
    proxy: Arc<Proxy>,
    interval: Duration,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last = fingerprint(&files);
    async move {
        loop {
            let forced = {
                #[cfg(unix)]
                {
                    let hangup = async {
                        match hup.as_mut() {
                            Some(h) => {
                                h.recv().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(interval) => false,
                        () = hangup => true,
                    }
                }
                #[cfg(not(unix))]
                {
                    tokio::time::sleep(interval).await;
                    false
                }
            };
            let mut now = fingerprint(&files);
            if now == last && !forced {
                continue;
            }
            // Debounce a change seen by polling: wait until the files stop
            // changing. A SIGHUP says the files are ready: reload at once.
            if !forced {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let again = fingerprint(&files);
                    if again == now {
                        break;
                    }
                    now = again;
                }
            }
            last = now;
            reload(&files, &proxy);
        }
    }
}

fn reload(files: &[PathBuf], proxy: &Proxy) {
    let loaded = config::load(files);
    for d in &loaded.diagnostics {
        eprintln!("mesh-proxy: {d}");
    }
    let version = proxy.version();
    match loaded.config {
        None => {
            eprintln!("mesh-proxy: the new config is invalid; version {version} stays in force")
        }
        Some(config) => {
            if config.listeners.len() != proxy.listeners().len() {
                eprintln!("mesh-proxy: listener changes take effect at the next start");
            }
            match proxy.reload(config) {
                Ok(v) => eprintln!("mesh-proxy: config version {v} in force"),
                Err(e) => {
                    eprintln!("mesh-proxy: reload refused ({e}); version {version} stays in force")
                }
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
