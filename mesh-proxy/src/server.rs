//! Accepting connections and serving HTTP/1.1 and HTTP/2 (prior knowledge) on
//! them with hyper, until shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::graceful::{Graceful, Watcher};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mesh_core::context::ClientAddr;
use mesh_tls::{InboundStream, MtlsAcceptor, PeerInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::Service;

use crate::capture::OriginalDst;
use crate::framing::FramingGuard;
use crate::hyper_service::HyperService;
use crate::observe::LogBody;

/// Envoy's default limit on the size of request headers: 60 KiB
/// (`max_request_headers_kb`).
pub const MAX_HEADER_BYTES: usize = 60 * 1024;

/// How long a client may take to send a whole request head, from the
/// connection's start for the first request and from the head's first byte
/// for the next ones; the connection is closed after that. 10 s, not Envoy's: Envoy's `request_headers_timeout` is
/// off by default and its edge guide bounds the whole request at 300 s
/// instead, which leaves a slowloris client a connection for minutes; a
/// sidecar's callers are programs that send a head in one write, so 10 s is
/// generous for them and short for an attacker (hyper's own default is 30 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1 keep-alive connection may sit idle between requests
/// before the proxy closes it: Envoy's `idle_timeout` default, 1 h. Closing
/// sooner costs the caller a new connection (and between sidecars a TLS
/// handshake) for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Connections a listener serves at once (Envoy's edge example); one more
/// is accepted and closed at once, so that a flood of idle connections costs
/// a bounded amount of memory and file descriptors.
pub const MAX_CONNECTIONS: usize = 10_000;

/// HTTP/2 streams a client may have open at once: Envoy's edge value (hyper's
/// default, 200, is "not part of stability").
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Streams a client may open and reset before the server accepts them, before
/// the connection is closed with GOAWAY `ENHANCE_YOUR_CALM` (Rapid Reset,
/// CVE-2023-44487): h2's default, set explicitly so a dependency update
/// cannot unset it.
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server may reset because of the client's errors before the
/// connection is closed (MadeYouReset, CVE-2025-8671): h2's default, set
/// explicitly (hyper 1.2 once passed `None`, which disabled it; hyper#3782).
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The limits a listener enforces on its clients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest request head (431 beyond).
    pub(crate) max_header_bytes: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub(crate) header_read_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub(crate) idle_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub(crate) max_connections: usize,
}

/// Serves `listener` with `svc` (cloned per connection, with what is known
/// of the peer: its address, as `addrs` says, and, over mTLS, its identity)
/// until `shutdown` turns true; then stops accepting and lets open
/// connections finish the requests they have (hyper's graceful shutdown),
/// returning when they are done. With `tls`, each connection first goes
/// through the mTLS acceptor in its PeerAuthentication mode; a refused
/// handshake (a plaintext client on a STRICT port, no certificate, a foreign
/// CA) closes that connection and nothing else.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    tls: Option<MtlsAcceptor>,
    svc: S,
    addrs: ClientAddrs,
    shutdown: watch::Receiver<bool>,
    limits: Limits,
) where
    S: HttpService,
{
    accept_loop(listener, shutdown, limits, move |tcp, peer, watcher| {
        let svc = svc.clone();
        let tls = tls.clone();
        let addrs = addrs.clone();
        async move {
            let Some((stream, info)) = handshake(tls.as_ref(), tcp, peer).await else {
                return;
            };
            let svc = PerConnection::new(svc, info, addrs, None);
            serve_http(stream, svc, watcher, limits, peer).await;
        }
    })
    .await;
}

/// The PeerAuthentication handshake of an accepted connection (`None`:
/// plaintext, no identity): the stream to serve and what is known of the
/// peer, or `None` when the handshake refused it (logged).
pub(crate) async fn handshake(
    tls: Option<&MtlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(InboundStream, PeerInfo)> {
    match tls {
        None => Some((
            InboundStream::Plain(tcp),
            PeerInfo {
                addr: Some(peer),
                ..PeerInfo::default()
            },
        )),
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(accepted) => Some((accepted.stream, accepted.peer)),
            Err(e) => {
                tracing::info!(peer = %peer, error = %e, "inbound connection refused");
                None
            }
        },
    }
}

/// What a listener serves: hyper's service for one request, cloned per
/// connection (and by hyper per request).
pub(crate) trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<LogBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<
            Request<Incoming>,
            Response = Response<LogBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Which requests of a listener carry the client's address
/// ([`ClientAddr`]). Of what the proxy runs, only a balancer hashing the
/// source IP reads it, and putting it in costs each request http's
/// extensions map (three allocations) and the retry layer a copy of it.
#[derive(Clone, Debug)]
pub(crate) struct ClientAddrs(Option<Arc<AtomicBool>>);

impl ClientAddrs {
    /// None (nothing below reads it: the inbound path).
    pub(crate) fn never() -> Self {
        ClientAddrs(None)
    }

    /// Those made while `flag` is set.
    pub(crate) fn while_set(flag: Arc<AtomicBool>) -> Self {
        ClientAddrs(Some(flag))
    }

    #[inline]
    fn wanted(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Acquire))
    }
}

/// A listener's service on one connection: puts what is known of the peer
/// (mesh-tls's [`PeerInfo`], replacing anything a client could have smuggled
/// in; its address as [`ClientAddrs`] says) and, for a captured connection,
/// its original destination into every request.
#[derive(Clone, Debug)]
pub(crate) struct PerConnection<S> {
    inner: S,
    /// Shared: hyper clones the service for every request. Its address is
    /// kept apart, in `addr`.
    peer: Arc<PeerInfo>,
    addr: Option<SocketAddr>,
    addrs: ClientAddrs,
    original_dst: Option<SocketAddr>,
}

impl<S> PerConnection<S> {
    pub(crate) fn new(
        inner: S,
        mut peer: PeerInfo,
        addrs: ClientAddrs,
        original_dst: Option<SocketAddr>,
    ) -> Self {
        PerConnection {
            inner,
            addr: peer.addr.take(),
            peer: Arc::new(peer),
            addrs,
            original_dst,
        }
    }
}

impl<S, B> Service<Request<B>> for PerConnection<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ext = req.extensions_mut();
        self.peer.insert_into(ext);
        if let Some(addr) = self.addr
            && self.addrs.wanted()
        {
            ext.insert(ClientAddr(addr));
        }
        if let Some(dst) = self.original_dst {
            ext.insert(OriginalDst(dst));
        }
        self.inner.call(req)
    }
}

/// Accepts connections on `listener` and runs `handle` on each in its own
/// task until `shutdown` turns true; then stops accepting and waits for the
/// HTTP connections registered with their [`Watcher`] to finish their
/// requests (hyper's graceful shutdown). Past `limits.max_connections` open
/// at once, a new connection is closed on accept.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, Watcher) -> F + Send,
    F: Future<Output = ()> + Send + 'static,
{
    let graceful = Graceful::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = %peer, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = handle(tcp, peer, graceful.watcher());
        tokio::spawn(async move {
            // Held until the connection ends.
            let _slot = slot;
            connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves HTTP/1.1 or HTTP/2 (prior knowledge) on one accepted connection,
/// through the framing guard, until the client is done or a graceful shutdown
/// asked `watcher`'s owner to stop.
pub(crate) async fn serve_http<I, S>(
    io: I,
    svc: S,
    watcher: Watcher,
    limits: Limits,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<LogBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = builder(limits);
    // The guard times heads (hyper's timer could not start for the first,
    // which the guard holds back, and would run on idle keep-alive
    // connections too) and idle keep-alive connections.
    let guard = FramingGuard::new(io, limits.max_header_bytes)
        .with_head_timeout(limits.header_read_timeout)
        .with_idle_timeout(limits.idle_timeout);
    let conn = builder.serve_connection(TokioIo::new(guard), HyperService::new(svc));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once `shutdown` says true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The framing guard times each head from its first byte; hyper's
        // timer would also run while a keep-alive connection is idle.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    /// The `ClientAddr` and `OriginalDst` a request reached the inner
    /// service with.
    fn seen(
        svc: &mut PerConnection<impl Service<Request<()>, Response = Request<()>>>,
    ) -> (Option<ClientAddr>, Option<SocketAddr>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = std::pin::pin!(svc.call(Request::new(())));
        let Poll::Ready(Ok(req)) = fut.as_mut().poll(&mut cx) else {
            panic!("the inner service answers at once");
        };
        (
            req.extensions().get::<ClientAddr>().copied(),
            req.extensions().get::<OriginalDst>().map(|d| d.0),
        )
    }

    #[test]
    fn the_client_address_goes_in_while_it_is_wanted() {
        let echo = tower::service_fn(|req: Request<()>| async { Ok::<_, Infallible>(req) });
        let client: SocketAddr = "10.0.0.7:4000".parse().unwrap();
        let dst: SocketAddr = "10.96.0.1:80".parse().unwrap();
        let peer = PeerInfo {
            addr: Some(client),
            ..PeerInfo::default()
        };
        let flag = Arc::new(AtomicBool::new(false));
        let mut svc = PerConnection::new(
            echo,
            peer.clone(),
            ClientAddrs::while_set(flag.clone()),
            Some(dst),
        );
        assert_eq!(seen(&mut svc), (None, Some(dst)));
        flag.store(true, Ordering::Release);
        assert_eq!(seen(&mut svc), (Some(ClientAddr(client)), Some(dst)));
        flag.store(false, Ordering::Release);
        assert_eq!(seen(&mut svc), (None, Some(dst)));

        let mut never = PerConnection::new(echo, peer, ClientAddrs::never(), None);
        assert_eq!(seen(&mut never), (None, None));
    }
}
