//! [`Pool`]: the connections to one address, and sending a request on one.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper::client::conn::{http1, http2};
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mesh_core::{BoxError, MeshError};
use tower::ServiceExt;

use super::body::{PoolBody, Release};
use super::idle::{Checkout, Connections, Http1Conn};
use super::{ambiguous_framing, connect_error, upstream_error};
use crate::body::Body;

/// How a [`Pool`] speaks to its address.
#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    /// HTTP/2 with prior knowledge; otherwise HTTP/1.1, or HTTP/2 when the
    /// connector says ALPN chose it.
    pub(crate) http2_only: bool,
    /// Connections idle this long are closed rather than reused.
    pub(crate) idle_timeout: Duration,
}

/// The connections to one address, made by a connector (any
/// `tower::Service<Uri>` that hyper-util's legacy client could use, such as
/// `HttpConnector`, `ConnectionLimit`, `MtlsConnector`) and asked always for
/// that address, whatever the request's URI names, so a request keeps the
/// caller's authority (`Host` over HTTP/1.1, `:authority` over HTTP/2) as
/// Envoy forwards it. Clones share the connections.
pub(crate) struct Pool<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    connector: C,
    /// The address, as the URI the connector is called with.
    dst: Uri,
    http2_only: bool,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    conns: Arc<Connections>,
    /// Held while an HTTP/2 connection is being made (or one may be: a TLS
    /// connection whose protocol ALPN has not yet told), so that concurrent
    /// requests wait for it rather than each open their own.
    connecting_h2: tokio::sync::Mutex<()>,
    /// Over TLS, what ALPN chose the last time: [`UNKNOWN`], [`H1`] or
    /// [`H2`].
    negotiated: AtomicU8,
    /// Counts connects made under `connecting_h2` that failed: those who
    /// waited for such a connect fail with it, as Envoy fails the requests
    /// pending on a connection that could not be made, rather than each
    /// trying again in turn.
    failed_h2: AtomicU64,
}

/// No TLS connection made yet (or not over TLS).
const UNKNOWN: u8 = 0;
/// ALPN chose HTTP/1.1: connections are made concurrently.
const H1: u8 = 1;
/// ALPN chose HTTP/2: one shared connection.
const H2: u8 = 2;

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("dst", &self.inner.dst)
            .field("http2_only", &self.inner.http2_only)
            .field("connections", &self.inner.conns)
            .finish()
    }
}

/// A connection just made.
enum Fresh {
    Http1(Http1Conn),
    Http2(http2::SendRequest<Body>),
}

/// Why a request on one connection failed.
enum Failed {
    /// The connection was closed before the request was written: it is
    /// given back to be sent on another, with why (boxed: rare, and the
    /// result of every request need not be as large as a request).
    NotSent(Box<Request<Body>>, hyper::Error),
    /// Anything else, as the mesh's error.
    Error(BoxError),
}

impl<C> Pool<C> {
    /// A pool connecting with `connector` to `scheme://addr/`.
    pub(crate) fn new(connector: C, scheme: &str, addr: SocketAddr, config: PoolConfig) -> Self {
        let dst = Uri::builder()
            .scheme(scheme)
            .authority(addr.to_string())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        Pool {
            inner: Arc::new(Inner {
                connector,
                dst,
                http2_only: config.http2_only,
                h1: http1::Builder::new(),
                h2,
                conns: Arc::new(Connections::new(config.idle_timeout)),
                connecting_h2: tokio::sync::Mutex::new(()),
                negotiated: AtomicU8::new(UNKNOWN),
                failed_h2: AtomicU64::new(0),
            }),
        }
    }

    /// Whether the pool is used by anyone else or keeps a connection.
    pub(crate) fn in_use(&self) -> bool {
        Arc::strong_count(&self.inner) > 1 || !self.inner.conns.is_empty()
    }
}

impl<C> Pool<C>
where
    C: tower::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Read + Write + Connection + Unpin + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    /// Sends `req` (origin-form with a `Host`, or absolute-form: it is put in
    /// the form its connection's protocol sends, the authority kept) on a
    /// pooled connection if one is ready, else on a new one. A request that
    /// a reused connection closed before it was written is sent once more
    /// on a new connection.
    pub(crate) async fn send(&self, req: Request<Body>) -> Result<Response<PoolBody>, BoxError> {
        let req = match self.inner.conns.checkout() {
            None => req,
            Some(conn) => match self.send_on(conn, req).await {
                Ok(res) => return Ok(res),
                Err(Failed::Error(e)) => return Err(e),
                Err(Failed::NotSent(req, _)) => *req,
            },
        };
        // Connecting (a TCP connect, a TLS and an HTTP handshake) is a large
        // state machine: boxed, it is made only when needed, and the future
        // of every request, which each layer above moves, stays small.
        Box::pin(self.send_new(req)).await
    }

    /// Sends `req` on a new connection.
    async fn send_new(&self, req: Request<Body>) -> Result<Response<PoolBody>, BoxError> {
        let conn = match self.connect().await? {
            Fresh::Http1(conn) => Checkout::Http1(conn),
            Fresh::Http2(tx) => Checkout::Http2(tx),
        };
        match self.send_on(conn, req).await {
            Ok(res) => Ok(res),
            Err(Failed::Error(e)) => Err(e),
            // Not sent on a new connection either: it failed at once.
            Err(Failed::NotSent(_, e)) => Err(upstream_error(e)),
        }
    }

    /// Sends `req` on `conn`.
    async fn send_on(
        &self,
        conn: Checkout,
        req: Request<Body>,
    ) -> Result<Response<PoolBody>, Failed> {
        let mut req = req;
        // HTTP/1.1 goes origin-form and its connection back to the pool when
        // the body ends; HTTP/2 goes absolute-form on the shared connection.
        let (sent, http1) = match conn {
            Checkout::Http1(mut conn) => {
                origin_form(&mut req, &self.inner.dst);
                (conn.tx.try_send_request(req).await, Some(conn))
            }
            Checkout::Http2(mut tx) => {
                absolute_form(&mut req, &self.inner.dst);
                (tx.try_send_request(req).await, None)
            }
        };
        let res = sent.map_err(|mut e| match e.take_message() {
            Some(req) => Failed::NotSent(Box::new(req), e.into_error()),
            None => Failed::Error(upstream_error(e.into_error())),
        })?;
        if let Some(e) = ambiguous_framing(&res) {
            // The connection is dropped, never reused.
            return Err(Failed::Error(e));
        }
        // The connection's details (hyper-util's `HttpInfo`, the peer) are
        // not copied into the response: nothing reads them.
        let release = http1.map(|conn| Release::new(conn, self.inner.conns.clone()));
        Ok(res.map(|body| PoolBody::new(body, release)))
    }

    /// A new connection, its task spawned; an HTTP/2 one shared.
    ///
    /// Over TLS, until ALPN has told the protocol, and then while it says
    /// HTTP/2, connections are made one at a time: a burst of first requests
    /// waits for the first connection and shares it, instead of each opening
    /// its own (a handshake and a `maxConnections` slot each).
    async fn connect(&self) -> Result<Fresh, BoxError> {
        let inner = &*self.inner;
        let tls = inner.dst.scheme() == Some(&Scheme::HTTPS);
        let negotiated = inner.negotiated.load(Ordering::Acquire);
        if !inner.http2_only && (!tls || negotiated == H1) {
            return self.connect_once().await;
        }
        let failed = inner.failed_h2.load(Ordering::Acquire);
        let connecting = inner.connecting_h2.lock().await;
        // Made by whoever held the lock before?
        if let Some(tx) = inner.conns.shared_http2() {
            return Ok(Fresh::Http2(tx));
        }
        if inner.failed_h2.load(Ordering::Acquire) != failed {
            return Err(MeshError::ConnectFailure(
                "the connection this request waited for could not be made".into(),
            )
            .into());
        }
        if !inner.http2_only && inner.negotiated.load(Ordering::Acquire) == H1 {
            // HTTP/1.1 after all: no need to wait for one another.
            drop(connecting);
            return self.connect_once().await;
        }
        let made = self.connect_once().await;
        if made.is_err() {
            inner.failed_h2.fetch_add(1, Ordering::AcqRel);
        }
        made
    }

    async fn connect_once(&self) -> Result<Fresh, BoxError> {
        let inner = &*self.inner;
        let io = inner
            .connector
            .clone()
            .oneshot(inner.dst.clone())
            .await
            .map_err(|e| connect_error(e.into()))?;
        let h2 = io.connected().is_negotiated_h2();
        inner
            .negotiated
            .store(if h2 { H2 } else { H1 }, Ordering::Release);
        if inner.http2_only || h2 {
            let (mut tx, conn) = inner.h2.handshake(io).await.map_err(upstream_error)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection");
                }
            });
            tx.ready().await.map_err(upstream_error)?;
            inner.conns.share(&tx);
            Ok(Fresh::Http2(tx))
        } else {
            let (tx, conn) = inner.h1.handshake(io).await.map_err(upstream_error)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection");
                }
            });
            Ok(Fresh::Http1(Http1Conn { tx }))
        }
    }
}

/// Makes `req` origin-form, as HTTP/1.1 sends it: a URI's scheme and
/// authority are dropped, the authority kept in `Host` unless there is one
/// (as hyper-util does: no port if it is the scheme's default); a request
/// with neither gets the pool's address. An origin-form request with a
/// `Host`, as nearly all are, is left as it is.
fn origin_form(req: &mut Request<Body>, dst: &Uri) {
    let has_host = req.headers().contains_key(http::header::HOST);
    let uri = req.uri();
    if uri.scheme().is_none() && uri.authority().is_none() {
        if !has_host && let Some(host) = dst.authority().and_then(|a| host_header(dst.scheme(), a))
        {
            req.headers_mut().insert(http::header::HOST, host);
        }
        return;
    }
    let Parts {
        scheme,
        authority,
        path_and_query,
        ..
    } = std::mem::take(req.uri_mut()).into_parts();
    let authority = authority.or_else(|| dst.authority().cloned());
    if !has_host
        && let Some(authority) = &authority
        && let Some(host) = host_header(scheme.as_ref().or(dst.scheme()), authority)
    {
        req.headers_mut().insert(http::header::HOST, host);
    }
    let mut parts = Parts::default();
    parts.path_and_query = Some(path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/")));
    *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
}

/// Makes `req` absolute-form, as HTTP/2 sends it (`:scheme`, `:authority`):
/// the pool's scheme, and the request's authority (its URI's, else its
/// `Host`, else the pool's address).
fn absolute_form(req: &mut Request<Body>, dst: &Uri) {
    let uri = req.uri();
    if uri.authority().is_some() && uri.scheme() == dst.scheme() {
        return;
    }
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    if parts.authority.is_none() {
        parts.authority = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .or_else(|| dst.authority().cloned());
    }
    parts.scheme = dst.scheme().cloned();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
}

/// `Host` for `authority`: without the port when it is the scheme's default.
fn host_header(scheme: Option<&Scheme>, authority: &Authority) -> Option<HeaderValue> {
    let default_port = match scheme {
        Some(s) if *s == Scheme::HTTPS => Some(443),
        Some(s) if *s == Scheme::HTTP => Some(80),
        _ => None,
    };
    let value = match authority.port_u16() {
        Some(port) if Some(port) == default_port => authority.host(),
        _ => authority.as_str(),
    };
    HeaderValue::from_str(value).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::body;

    fn req(uri: &str, host: Option<&str>) -> Request<Body> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(http::header::HOST, h);
        }
        b.body(body::full("")).unwrap()
    }

    fn host(req: &Request<Body>) -> Option<&str> {
        req.headers()
            .get(http::header::HOST)
            .map(|h| h.to_str().unwrap())
    }

    #[test]
    fn http1_requests_go_origin_form_with_their_authority_in_host() {
        let dst: Uri = "http://10.0.0.7:9080/".parse().unwrap();
        let cases = [
            // (uri, host, uri sent, host sent)
            ("/a?b", Some("web"), "/a?b", Some("web")),
            ("/a", None, "/a", Some("10.0.0.7:9080")),
            ("http://web:80/a?b", None, "/a?b", Some("web")),
            ("http://web:8080/a", None, "/a", Some("web:8080")),
            ("http://web/a", Some("other"), "/a", Some("other")),
            ("http://web", None, "/", Some("web")),
        ];
        for (uri, h, want_uri, want_host) in cases {
            let mut r = req(uri, h);
            origin_form(&mut r, &dst);
            assert_eq!(r.uri().to_string(), want_uri, "{uri}");
            assert_eq!(host(&r), want_host, "{uri}");
        }
    }

    #[test]
    fn http2_requests_go_absolute_form_with_the_pools_scheme() {
        let plain: Uri = "http://10.0.0.7:9080/".parse().unwrap();
        let tls: Uri = "https://10.0.0.7:9080/".parse().unwrap();
        let cases = [
            (&plain, "/a?b", Some("web:9080"), "http://web:9080/a?b"),
            (&plain, "/a", None, "http://10.0.0.7:9080/a"),
            (&plain, "http://web/a", Some("other"), "http://web/a"),
            (&tls, "/a", Some("web"), "https://web/a"),
            (&tls, "http://web/a", None, "https://web/a"),
        ];
        for (dst, uri, h, want) in cases {
            let mut r = req(uri, h);
            absolute_form(&mut r, dst);
            assert_eq!(r.uri().to_string(), want, "{uri} to {dst}");
        }
    }
}
