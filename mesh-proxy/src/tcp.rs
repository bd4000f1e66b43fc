//! Opaque TCP through the proxy (Istio's `protocol: TCP`, and passthrough of
//! unknown destinations): a route to a service's endpoints, optionally over
//! mTLS, and a byte pump that counts what passes in Istio's TCP metrics.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use mesh_core::BoxError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

use crate::metrics::TcpCounters;

/// Envoy's default cluster `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream to or from a peer.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where a TCP service port's connections go.
#[derive(Debug)]
pub(crate) struct TcpRoute {
    /// The service's canonical host (`destination_service`).
    pub(crate) host: Arc<str>,
    /// The `ServiceEntry`'s name (`destination_service_name`).
    pub(crate) name: Arc<str>,
    /// Envoy's cluster name, `outbound|PORT||HOST` (access log).
    pub(crate) cluster: Arc<str>,
    endpoints: Vec<SocketAddr>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The DestinationRule's `connectionPool.tcp.connectTimeout` (Envoy's
    /// default 10 s).
    connect_timeout: Duration,
    next: AtomicUsize,
}

impl TcpRoute {
    pub(crate) fn new(
        host: Arc<str>,
        name: Arc<str>,
        cluster: Arc<str>,
        endpoints: Vec<SocketAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Self {
        TcpRoute {
            host,
            name,
            cluster,
            endpoints,
            tls,
            connect_timeout,
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the endpoints in round-robin order, trying the next one
    /// when a connection fails (Envoy retries connect failures of TCP
    /// proxies the same way).
    pub(crate) async fn connect(&self) -> Result<(SocketAddr, Box<dyn Stream>), BoxError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(format!("no endpoints for {}", self.host).into());
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let addr = self.endpoints[(start + i) % n];
            match self.connect_one(addr).await {
                Ok(s) => return Ok((addr, s)),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "TCP endpoint connect failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| "no endpoint".into()))
    }

    async fn connect_one(&self, addr: SocketAddr) -> Result<Box<dyn Stream>, BoxError> {
        match &self.tls {
            None => Ok(Box::new(connect_within(addr, self.connect_timeout).await?)),
            Some(config) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(self.connect_timeout));
                let mut connector = mesh_tls::MtlsConnector::with_connector(http, config.clone());
                let uri: http::Uri = format!("https://{addr}").parse()?;
                let stream = connector.ready().await?.call(uri).await?;
                Ok(Box::new(TokioIo::new(stream)))
            }
        }
    }
}

/// A plain TCP connection with Envoy's connect timeout and `TCP_NODELAY`.
pub(crate) async fn connect_plain(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_within(addr, CONNECT_TIMEOUT).await
}

/// A plain TCP connection with `TCP_NODELAY`, given up after `timeout`.
async fn connect_within(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Pumps bytes both ways until both sides are done, counting them; returns
/// the bytes received from and sent to the downstream client.
pub(crate) async fn pump<D, U>(downstream: D, mut upstream: U, counters: TcpCounters) -> (u64, u64)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    counters.opened.inc();
    let mut counted = Counted {
        io: downstream,
        counters: &counters,
        received: 0,
        sent: 0,
    };
    if let Err(e) = tokio::io::copy_bidirectional(&mut counted, &mut upstream).await {
        tracing::debug!(error = %e, "TCP proxy connection ended with an error");
    }
    counters.closed.inc();
    // This connection's own totals, also when it ended in an error.
    (counted.received, counted.sent)
}

/// The downstream side of a TCP proxy, counting bytes as they pass (so the
/// metrics move while a long connection lives, not only at its end).
struct Counted<'a, S> {
    io: S,
    counters: &'a TcpCounters,
    received: u64,
    sent: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.received += n as u64;
            this.counters.received.inc_by(n as u64);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.sent += n as u64;
            this.counters.sent.inc_by(n as u64);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    // Linux drops a SYN to a full accept queue; other systems refuse it.
    #[cfg(target_os = "linux")]
    #[tokio::test(start_paused = true)]
    async fn a_tcp_route_gives_up_connecting_after_its_connect_timeout() {
        // A listener whose accept queue is full: the kernel drops further
        // SYNs, so a connect to it hangs.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            let connect = TcpStream::connect(addr);
            if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_millis(100), connect).await {
                held.push(tcp);
            }
        }
        assert!(held.len() < 4, "the accept queue filled");
        let timeout = Duration::from_secs(2);
        let route = TcpRoute::new(
            "web".into(),
            "web".into(),
            "outbound|80||web".into(),
            vec![addr],
            None,
            timeout,
        );
        let start = tokio::time::Instant::now();
        assert!(route.connect().await.is_err());
        let took = start.elapsed();
        assert!(
            took >= timeout && took < CONNECT_TIMEOUT,
            "gave up after {took:?}, not the route's {timeout:?}"
        );
        drop((held, listener));
    }

    #[tokio::test]
    async fn pump_copies_both_ways_and_counts_each_direction() {
        let counters = TcpCounters {
            sent: Counter::default(),
            received: Counter::default(),
            opened: Counter::default(),
            closed: Counter::default(),
        };
        let (mut client, downstream) = tokio::io::duplex(1024);
        let (upstream, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump(downstream, upstream, counters.clone()));
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        server.write_all(b"world!!").await.unwrap();
        drop(server);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"world!!");
        drop(client);
        assert_eq!(task.await.unwrap(), (5, 7));
        assert_eq!(counters.received.get(), 5);
        assert_eq!(counters.sent.get(), 7);
        assert_eq!((counters.opened.get(), counters.closed.get()), (1, 1));
    }
}
