//! Upstream connections: a small per-endpoint pool on hyper's low-level
//! client connections (`hyper::client::conn::{http1, http2}`), as
//! linkerd2-proxy does, instead of hyper-util's legacy `Client`.
//!
//! Each endpoint (and each app or passthrough address) has its own
//! [`Pool`], so nothing is keyed or hashed per request: an HTTP/2
//! connection is shared by every request (one `SendRequest`, cloned), an
//! HTTP/1.1 connection carries one request at a time and waits in the pool's
//! idle list between requests. A connection goes back to the idle list only
//! once its response body has been read to the end ([`PoolBody`]), and never
//! after an ambiguously framed response. A connection idle past the idle
//! timeout is closed by a small task of its pool, which runs only while the
//! pool keeps connections, so an idle connection does not hold its socket
//! and its `maxConnections` slot until the pool is next used.
//!
//! Errors come out as the mesh's: connect failures
//! [`MeshError::ConnectFailure`], a refused connection slot
//! [`MeshError::Overloaded`], and failures after connecting as
//! [`upstream_error`] classifies them.

mod body;
mod idle;
mod pool;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use mesh_core::{BoxError, MeshError};

pub(crate) use body::PoolBody;
pub(crate) use pool::{Pool, PoolConfig};

/// The mesh's error for an upstream request that failed after connecting:
/// a response hyper could not parse (two lengths, oversized headers, a bad
/// status line) is 502 `UPE`; a connection closed before the whole response
/// is 503 `UC` (Envoy's "connection termination"); anything else a reset,
/// 503 `UR`. Such a connection is never reused.
pub(crate) fn upstream_error(e: hyper::Error) -> BoxError {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        return MeshError::UpstreamProtocol(Box::new(e)).into();
    }
    if e.is_incomplete_message() {
        return MeshError::UpstreamConnectionTermination(Box::new(e)).into();
    }
    MeshError::UpstreamReset(Box::new(e)).into()
}

/// The mesh's error for a connection that could not be made: a slot refused
/// by `tcp.maxConnections` is the mesh's overload (503 `UO`), anything else a
/// connect failure (503 `UF`).
fn connect_error(e: BoxError) -> BoxError {
    match MeshError::find(&*e) {
        Some(MeshError::Overloaded(why)) => MeshError::Overloaded(*why).into(),
        _ => MeshError::ConnectFailure(e).into(),
    }
}

/// Whether a response has both `Content-Length` and `Transfer-Encoding`:
/// hyper's client reads such a body as chunked and keeps the length, which
/// would then frame the response to the client wrongly (response
/// splitting). It is refused (502 `UPE`, as Envoy does) and its connection
/// is never reused, whatever hyper made of its bytes.
fn ambiguous_framing<B>(res: &Response<B>) -> Option<BoxError> {
    let headers = res.headers();
    (headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers.contains_key(http::header::CONTENT_LENGTH))
    .then(|| {
        MeshError::UpstreamProtocol(
            "upstream response with both Content-Length and Transfer-Encoding".into(),
        )
        .into()
    })
}

/// How many address pools [`AddrPools`] keeps before it forgets those with
/// no connection left.
const ADDR_POOLS_KEPT: usize = 256;

/// Plain HTTP/1.1 pools to any address, one per address, made on first use
/// (the inbound app ports, passthrough destinations).
#[derive(Clone)]
pub(crate) struct AddrPools {
    connector: HttpConnector,
    config: PoolConfig,
    pools: Arc<Mutex<HashMap<SocketAddr, Pool<HttpConnector>>>>,
}

impl AddrPools {
    /// Pools connecting with `connector`, keeping idle connections for
    /// `idle_timeout`.
    pub(crate) fn new(connector: HttpConnector, idle_timeout: Duration) -> Self {
        AddrPools {
            connector,
            config: PoolConfig {
                http2_only: false,
                idle_timeout,
            },
            pools: Arc::default(),
        }
    }

    /// The pool of `addr`.
    pub(crate) fn get(&self, addr: SocketAddr) -> Pool<HttpConnector> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(&addr) {
            return pool.clone();
        }
        if pools.len() >= ADDR_POOLS_KEPT {
            pools.retain(|_, pool| pool.in_use());
        }
        let pool = Pool::new(self.connector.clone(), "http", addr, self.config.clone());
        pools.insert(addr, pool.clone());
        pool
    }
}

impl fmt::Debug for AddrPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddrPools")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
