//! `max_connections`: a connector that takes a connection slot of the cluster
//! before it connects and holds it for as long as the connection lives.
//!
//! [`ConnectionLimit`] wraps any connector (a `tower::Service<http::Uri>`,
//! such as hyper-util's `HttpConnector` or mesh-tls's `MtlsConnector`). Each
//! call takes a slot of the pool's connection limit
//! ([`ConnectionPoolLayer::connection_limit`]); when none is free it fails at
//! once with [`MeshError::Overloaded`]`(`[`Overload::MaxConnections`]`)` and
//! counts the overflow (Envoy's `upstream_cx_overflow`), without calling the
//! inner connector. The connection it returns, a [`LimitedConnection`], gives
//! the slot back when dropped: when the client closes it, the server closes
//! it, or an idle pool evicts it. An idle keep-alive connection in a client's
//! pool still holds its slot, as in Envoy.
//!
//! hyper-util's legacy `Client` wraps a connector's error in its own `Error`
//! with the connector's error as `source()`, so [`MeshError::find`] on the
//! client's error still finds the refusal, and the edge answers 503 `UO`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use mesh_core::limit::{Permit, SharedLimit};
use mesh_core::{BoxError, MeshError, Overload};
use pin_project_lite::pin_project;

use super::ConnectionPoolLayer;

/// Where a [`ConnectionLimit`] takes its slots.
#[derive(Clone)]
enum Slots {
    /// A cluster's pool: its connection limit, and its overflow counter.
    Pool(ConnectionPoolLayer),
    /// A bare limit; overflow is refused but not counted.
    Limit(SharedLimit),
}

impl Slots {
    fn try_acquire(&self) -> Result<Permit, MeshError> {
        match self {
            Slots::Pool(pool) => pool.try_acquire_connection(),
            Slots::Limit(limit) => limit
                .try_acquire()
                .ok_or(MeshError::Overloaded(Overload::MaxConnections)),
        }
    }

    fn limit(&self) -> SharedLimit {
        match self {
            Slots::Pool(pool) => pool.connection_limit(),
            Slots::Limit(limit) => limit.clone(),
        }
    }
}

/// A connector that opens a connection only if the cluster has a connection
/// slot free (Istio's `tcp.maxConnections`, Envoy's `max_connections`), and
/// otherwise fails at once with
/// [`MeshError::Overloaded`]`(`[`Overload::MaxConnections`]`)`.
///
/// Every clone takes its slots from the same limit; give every endpoint's
/// client of one cluster a `ConnectionLimit` over the same
/// [`ConnectionPoolLayer`] to cap the connections to all of its hosts.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hyper_util::client::legacy::connect::HttpConnector;
/// use mesh_breaker::pool::{ConnectionLimit, ConnectionPoolLayer, PoolLimits};
/// use mesh_core::{MeshError, Overload};
/// use tower::ServiceExt;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let uri: http::Uri = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
///
/// let pool = ConnectionPoolLayer::new(PoolLimits { max_connections: 1, ..PoolLimits::default() });
/// let connector = ConnectionLimit::new(HttpConnector::new(), &pool);
///
/// let first = connector.clone().oneshot(uri.clone()).await.unwrap();
/// assert_eq!(pool.stats().connections_active, 1);
/// // No slot left: refused at once, and counted.
/// let err = connector.clone().oneshot(uri.clone()).await.unwrap_err();
/// assert!(matches!(MeshError::find(&*err), Some(MeshError::Overloaded(Overload::MaxConnections))));
/// assert_eq!(pool.stats().connections_overflow, 1);
/// // Closing the connection gives its slot back.
/// drop(first);
/// let _second = connector.oneshot(uri).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct ConnectionLimit<C> {
    inner: C,
    slots: Slots,
}

impl<C> ConnectionLimit<C> {
    /// Limits `inner` by `pool`'s [`max_connections`](super::PoolLimits::max_connections),
    /// counting refusals in its [`connections_overflow`](super::PoolStats::connections_overflow).
    pub fn new(inner: C, pool: &ConnectionPoolLayer) -> Self {
        ConnectionLimit {
            inner,
            slots: Slots::Pool(pool.clone()),
        }
    }

    /// Limits `inner` by a bare `limit` (refusals are not counted anywhere).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use hyper_util::client::legacy::connect::HttpConnector;
    /// use mesh_breaker::pool::ConnectionLimit;
    /// use mesh_core::limit::SharedLimit;
    /// use mesh_core::{MeshError, Overload};
    /// use tower::ServiceExt;
    ///
    /// let connector = ConnectionLimit::with_limit(HttpConnector::new(), SharedLimit::new(0));
    /// let err = connector.oneshot("http://127.0.0.1:1/".parse().unwrap()).await.unwrap_err();
    /// assert!(matches!(MeshError::find(&*err), Some(MeshError::Overloaded(Overload::MaxConnections))));
    /// # }
    /// ```
    pub fn with_limit(inner: C, limit: SharedLimit) -> Self {
        ConnectionLimit {
            inner,
            slots: Slots::Limit(limit),
        }
    }

    /// The limit the slots are taken from.
    pub fn limit(&self) -> SharedLimit {
        self.slots.limit()
    }

    /// The wrapped connector.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connector, mutably (to change its settings).
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: fmt::Debug> fmt::Debug for ConnectionLimit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("inner", &self.inner)
            .field("limit", &self.slots.limit())
            .finish()
    }
}

impl<C> tower::Service<Uri> for ConnectionLimit<C>
where
    C: tower::Service<Uri>,
    C::Error: Into<BoxError>,
{
    type Response = LimitedConnection<C::Response>;
    type Error = BoxError;
    type Future = ConnectFuture<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The slot is taken before connecting (a connection being set up
        // counts, as in Envoy), and only when a connection is really wanted.
        match self.slots.try_acquire() {
            Ok(permit) => ConnectFuture {
                state: State::Connecting {
                    future: self.inner.call(uri),
                    permit: Some(permit),
                },
            },
            Err(refused) => ConnectFuture {
                state: State::Refused {
                    error: Some(refused),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`ConnectionLimit`]: the inner connector's future holding
    /// its connection slot, or an immediate refusal.
    pub struct ConnectFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Refused { error: Option<MeshError> },
        Connecting { #[pin] future: F, permit: Option<Permit> },
    }
}

impl<F> fmt::Debug for ConnectFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Refused { .. } => "refused",
            State::Connecting { .. } => "connecting",
        };
        f.debug_struct("ConnectFuture")
            .field("state", &state)
            .finish()
    }
}

/// What a [`ConnectFuture`] answers when polled again after it completed.
const POLLED_AFTER_COMPLETION: &str = "ConnectFuture polled after completion";

impl<F, T, E> Future for ConnectFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<LimitedConnection<T>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .map_or_else(|| POLLED_AFTER_COMPLETION.into(), Into::into))),
            StateProj::Connecting { future, permit } => {
                let io = ready!(future.poll(cx));
                // On failure the slot is given back now, not when the
                // future is dropped.
                let permit = permit.take();
                Poll::Ready(match (io, permit) {
                    (Ok(io), Some(permit)) => Ok(LimitedConnection { io, permit }),
                    (Ok(_), None) => Err(POLLED_AFTER_COMPLETION.into()),
                    (Err(e), _) => Err(e.into()),
                })
            }
        }
    }
}

pin_project! {
    /// A connection made by [`ConnectionLimit`]: the inner connection, holding
    /// its slot of the cluster's `max_connections` until it is dropped.
    ///
    /// It reads, writes and describes itself (hyper's [`Read`] and [`Write`],
    /// hyper-util's [`Connection`]) as the inner connection does.
    pub struct LimitedConnection<T> {
        #[pin]
        io: T,
        permit: Permit,
    }
}

impl<T> LimitedConnection<T> {
    /// The inner connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The inner connection, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }
}

impl<T: fmt::Debug> fmt::Debug for LimitedConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedConnection")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl<T: Connection> Connection for LimitedConnection<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read> Read for LimitedConnection<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<T: Write> Write for LimitedConnection<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}
