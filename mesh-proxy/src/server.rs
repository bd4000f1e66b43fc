//! Accepting connections and serving HTTP/1.1 and HTTP/2 (prior knowledge) on
//! them with hyper, until shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_core::context::ClientAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::observe::LogBody;

/// Envoy's default limit on the size of request headers: 60 KiB.
pub(crate) const MAX_HEADER_BYTES: usize = 60 * 1024;

/// Serves `listener` with services made by `make` (one per connection, given
/// the client's address) until `shutdown` turns true; then stops accepting
/// and lets open connections finish the requests they have (hyper's graceful
/// shutdown), returning when they are done.
pub(crate) async fn serve<M, S>(listener: TcpListener, make: M, mut shutdown: watch::Receiver<bool>)
where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<LogBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(make(peer));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = builder();
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves once `shutdown` says true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Adds the client's address to each request.
pub(crate) fn with_client_addr<B>(mut req: Request<B>, peer: SocketAddr) -> Request<B> {
    req.extensions_mut().insert(ClientAddr(peer));
    req
}
