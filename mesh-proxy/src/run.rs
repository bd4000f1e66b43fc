//! `mesh-proxy run`: bind the listeners of the config and serve until a
//! shutdown signal, then drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mesh_core::{BoxError, MeshError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::body::{self, Body};
use crate::config::model::Direction;
use crate::observe::{Observe, ObserveConfig};
use crate::proxy::{Outbound, Proxy};
use crate::{admin, config, headers, server};

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
}

/// Loads the config, serves it, and returns when shut down (Ctrl-C or
/// SIGTERM) and drained.
pub async fn run(options: RunOptions) -> Result<(), BoxError> {
    let loaded = config::load(&options.configs);
    for d in &loaded.diagnostics {
        tracing::warn!("{d}");
    }
    let Some(config) = loaded.config else {
        let errors: Vec<String> = loaded.errors().map(ToString::to_string).collect();
        return Err(format!("invalid config:\n{}", errors.join("\n")).into());
    };
    let listeners = config.listeners.clone();
    let proxy = Proxy::new(config)?;
    let (shutdown_tx, shutdown) = watch::channel(false);

    let admin_listener = TcpListener::bind(options.admin)
        .await
        .map_err(|e| format!("cannot bind the admin address {}: {e}", options.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    eprintln!("mesh-proxy: admin listening on {admin_addr}");
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        proxy.clone(),
        shutdown.clone(),
    ));

    let mut serving = Vec::new();
    for l in &listeners {
        let tcp = TcpListener::bind(l.bind)
            .await
            .map_err(|e| format!("cannot bind listener {} on {}: {e}", l.name, l.bind))?;
        let addr = tcp.local_addr()?;
        proxy.add_listener(l.name.clone(), addr);
        eprintln!("mesh-proxy: listener {} listening on {addr}", l.name);
        match l.direction {
            Direction::Outbound => {
                let observe = Arc::new(ObserveConfig {
                    metrics: proxy.metrics_handle(),
                    reporter: "source",
                    access_log: true,
                });
                let outbound = Outbound::new(proxy.clone());
                serving.push(tokio::spawn(server::serve(
                    tcp,
                    move |peer| {
                        let svc = Observe::new(outbound.clone(), observe.clone());
                        tower::service_fn(move |req: Request<Incoming>| {
                            svc.clone().oneshot(server::with_client_addr(req, peer))
                        })
                    },
                    shutdown.clone(),
                )));
            }
            Direction::Inbound => {
                let app = l
                    .default_endpoint
                    .ok_or("an inbound listener needs a defaultEndpoint")?;
                let observe = Arc::new(ObserveConfig {
                    metrics: proxy.metrics_handle(),
                    reporter: "destination",
                    access_log: true,
                });
                let inbound = inbound_service(app);
                serving.push(tokio::spawn(server::serve(
                    tcp,
                    move |peer| {
                        let svc = Observe::new(inbound.clone(), observe.clone());
                        tower::service_fn(move |req: Request<Incoming>| {
                            svc.clone().oneshot(server::with_client_addr(req, peer))
                        })
                    },
                    shutdown.clone(),
                )));
            }
        }
    }
    proxy.set_ready(true);
    eprintln!("mesh-proxy: ready");

    shutdown_signal().await;
    eprintln!(
        "mesh-proxy: shutting down; draining for up to {:?}",
        options.drain
    );
    proxy.set_ready(false);
    let _ = shutdown_tx.send(true);
    let drained =
        tokio::time::timeout(options.drain, futures_util::future::join_all(serving)).await;
    if drained.is_err() {
        eprintln!("mesh-proxy: drain deadline passed; closing remaining connections");
    }
    admin_task.abort();
    Ok(())
}

/// The inbound path: every request goes to the local app.
fn inbound_service(
    app: SocketAddr,
) -> tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, BoxError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    tower::util::BoxCloneSyncService::new(tower::service_fn(move |mut req: Request<Body>| {
        let client = client.clone();
        async move {
            headers::strip_hop_by_hop(req.headers_mut());
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = Uri::builder()
                .scheme("http")
                .authority(app.to_string())
                .path_and_query(path)
                .build()?;
            match client.request(req).await {
                Ok(res) => {
                    let mut res = res.map(body::boxed);
                    headers::strip_hop_by_hop(res.headers_mut());
                    Ok(res)
                }
                Err(e) if e.is_connect() => Err(MeshError::ConnectFailure(Box::new(e)).into()),
                Err(e) => Err(MeshError::UpstreamReset(Box::new(e)).into()),
            }
        }
    }))
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
