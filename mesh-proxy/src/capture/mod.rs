//! Capture listeners (`Sidecar` listeners with `captureMode: IPTABLES`): they
//! receive the connections `mesh-proxy iptables` redirected and serve each by
//! its original destination (`SO_ORIGINAL_DST`).
//!
//! - **Outbound** (Istio's 15001): a destination that is a service's virtual
//!   IP (`ServiceEntry.addresses`) and port is that service's: HTTP ports go
//!   through the service's routes, TCP ports to its endpoints. Any other
//!   destination is sniffed: HTTP is routed by its `Host`, and what no service
//!   claims follows the outbound policy (`allow-any`: passed through to where
//!   it was going; `registry-only`: refused).
//! - **Inbound** (Istio's 15006): after the PeerAuthentication handshake, HTTP
//!   goes to the app on 127.0.0.1 at the original port through the inbound
//!   path (authorization, `x-forwarded-client-cert`); anything else is passed
//!   to the same address as TCP.

pub(crate) mod sniff;

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::graceful::Watcher;
use mesh_core::{ResponseFlag, ResponseFlags};
use mesh_tls::{MtlsAcceptor, PeerInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use self::sniff::{DETECTION_TIMEOUT, Sniffed};
use crate::access_log::AccessLog;
use crate::metrics::TcpLabels;
use crate::observe::{self, TcpLog};
use crate::proxy::{Proxy, VipTarget};
use crate::server::{self, ClientAddrs, HttpService, Limits, PerConnection};
use crate::tcp;

/// The destination a captured connection had before it was redirected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OriginalDst(pub(crate) SocketAddr);

/// What to do with outbound traffic no service claims (Istio's
/// `outboundTrafficPolicy.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutboundPolicy {
    /// Pass it through to its original destination (Istio's default).
    #[default]
    AllowAny,
    /// Refuse it: 502 `NR` for HTTP, a closed connection for TCP.
    RegistryOnly,
}

impl std::str::FromStr for OutboundPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "allow-any" => Ok(OutboundPolicy::AllowAny),
            "registry-only" => Ok(OutboundPolicy::RegistryOnly),
            _ => Err(format!("{s:?}: expected allow-any or registry-only")),
        }
    }
}

/// The original destination of a redirected connection: `SO_ORIGINAL_DST`
/// (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6). An IPv4 connection accepted on a
/// dual-stack IPv6 socket (a v4-mapped address) has its destination in the
/// IPv4 table. Fails on a connection that was not redirected.
pub(crate) fn original_dst(tcp: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(tcp);
    let addr = match tcp.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))?;
    Ok(canonical(addr))
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so VIP and app lookups see one form.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The original destination, unless the connection was made to the listener
/// itself (not redirected: serving it would loop back into the proxy).
fn destination(tcp: &TcpStream) -> Option<SocketAddr> {
    let local = canonical(tcp.local_addr().ok()?);
    match original_dst(tcp) {
        Ok(dst) if dst != local => Some(dst),
        Ok(_) => {
            tracing::debug!(%local, "connection to the capture port itself refused");
            None
        }
        Err(e) => {
            tracing::debug!(%local, error = %e, "no original destination: not a redirected connection");
            None
        }
    }
}

/// What both capture listeners need.
pub(crate) struct Capture {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) policy: OutboundPolicy,
    pub(crate) limits: Limits,
    /// Where TCP connections are logged (`None`: no access log).
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// Inbound connections that do not sniff as HTTP are refused (any
    /// AuthorizationPolicy applies): their rules are not evaluated for raw
    /// TCP yet, and HTTP a client disguises as opaque (a pause before its
    /// first byte, a leading blank line) would otherwise reach the app past
    /// them, with any `x-forwarded-client-cert` it forged.
    pub(crate) refuse_opaque_inbound: bool,
}

/// Serves the outbound capture listener until `shutdown`.
pub(crate) async fn serve_outbound<S: HttpService>(
    listener: TcpListener,
    capture: Arc<Capture>,
    http: S,
    shutdown: watch::Receiver<bool>,
) {
    let limits = capture.limits;
    server::accept_loop(listener, shutdown, limits, move |tcp, peer, watcher| {
        outbound_connection(capture.clone(), http.clone(), tcp, peer, watcher)
    })
    .await;
}

/// One captured outbound connection, by its original destination.
async fn outbound_connection<S: HttpService>(
    capture: Arc<Capture>,
    http: S,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
) {
    let Some(dst) = destination(&tcp) else {
        return;
    };
    let info = PeerInfo {
        addr: Some(peer),
        ..PeerInfo::default()
    };
    let target = capture.proxy.snapshot().vip(dst);
    match target {
        Some(VipTarget::Tcp(route)) => {
            let target = TcpTarget {
                reporter: "source",
                service: &route.host,
                name: &route.name,
                security: "unknown",
                cluster: &route.cluster,
            };
            capture.tcp_session(tcp, dst, target, route.connect()).await;
        }
        Some(VipTarget::Http) => {
            server::serve_http(
                tcp,
                PerConnection::new(http, info, capture.proxy.client_addrs(), Some(dst)),
                watcher,
                capture.limits,
                peer,
            )
            .await;
        }
        None => {
            let (sniffed, stream) = match sniff::sniff(tcp, DETECTION_TIMEOUT).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "captured connection failed");
                    return;
                }
            };
            match (sniffed, capture.policy) {
                (Sniffed::Http, _) => {
                    server::serve_http(
                        stream,
                        PerConnection::new(http, info, capture.proxy.client_addrs(), Some(dst)),
                        watcher,
                        capture.limits,
                        peer,
                    )
                    .await;
                }
                (Sniffed::Opaque, OutboundPolicy::AllowAny) => {
                    // Envoy's PassthroughCluster: bytes to where they were going.
                    let target = TcpTarget {
                        reporter: "source",
                        service: PASSTHROUGH,
                        name: PASSTHROUGH,
                        security: "unknown",
                        cluster: PASSTHROUGH,
                    };
                    let connect = async move { tcp::connect_plain(dst).await.map(|t| (dst, t)) };
                    capture.tcp_session(stream, dst, target, connect).await;
                }
                (Sniffed::Opaque, OutboundPolicy::RegistryOnly) => {
                    tracing::info!(%dst, "TCP to an unknown destination refused (registry-only)");
                }
            }
        }
    }
}

/// Serves the inbound capture listener until `shutdown`: the
/// PeerAuthentication handshake (`tls`), then HTTP through `http` or bytes to
/// the app at 127.0.0.1 on the original port.
pub(crate) async fn serve_inbound<S: HttpService>(
    listener: TcpListener,
    tls: Option<MtlsAcceptor>,
    capture: Arc<Capture>,
    http: S,
    shutdown: watch::Receiver<bool>,
) {
    let limits = capture.limits;
    server::accept_loop(listener, shutdown, limits, move |tcp, peer, watcher| {
        inbound_connection(
            capture.clone(),
            http.clone(),
            tls.clone(),
            tcp,
            peer,
            watcher,
        )
    })
    .await;
}

/// One captured inbound connection: handshake, sniff, then the app.
async fn inbound_connection<S: HttpService>(
    capture: Arc<Capture>,
    http: S,
    tls: Option<MtlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
) {
    let Some(dst) = destination(&tcp) else {
        return;
    };
    let Some((stream, info)) = server::handshake(tls.as_ref(), tcp, peer).await else {
        return;
    };
    let mtls = info.is_mtls();
    let (sniffed, stream) = match sniff::sniff(stream, DETECTION_TIMEOUT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "inbound connection failed");
            return;
        }
    };
    match sniffed {
        Sniffed::Http => {
            server::serve_http(
                stream,
                PerConnection::new(http, info, ClientAddrs::never(), Some(dst)),
                watcher,
                capture.limits,
                peer,
            )
            .await;
        }
        Sniffed::Opaque if capture.refuse_opaque_inbound => {
            tracing::debug!(%peer, %dst, "opaque inbound connection refused: authorization applies");
        }
        Sniffed::Opaque => {
            let app = app_address(dst);
            let service = app.to_string();
            let cluster = format!("inbound|{}||", dst.port());
            let target = TcpTarget {
                reporter: "destination",
                service: &service,
                name: "inbound",
                security: if mtls { "mutual_tls" } else { "none" },
                cluster: &cluster,
            };
            let connect = async move { tcp::connect_plain(app).await.map(|t| (app, t)) };
            capture.tcp_session(stream, dst, target, connect).await;
        }
    }
}

/// The `destination_service` of connections no service claims (Envoy's name).
const PASSTHROUGH: &str = "PassthroughCluster";

/// Who a proxied TCP connection is counted and logged as.
struct TcpTarget<'a> {
    reporter: &'static str,
    /// `destination_service`.
    service: &'a str,
    /// `destination_service_name`.
    name: &'a str,
    /// `connection_security_policy`.
    security: &'static str,
    /// The access log's `upstream_cluster`.
    cluster: &'a str,
}

impl Capture {
    /// Connects (`connect` gives the upstream and its address), pumps the
    /// connection to it or notes that none could be made (`UF`), then logs it.
    async fn tcp_session<D, U, E>(
        &self,
        downstream: D,
        dst: SocketAddr,
        target: TcpTarget<'_>,
        connect: impl Future<Output = Result<(SocketAddr, U), E>>,
    ) where
        D: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
        E: std::fmt::Display,
    {
        let (start_time, started) = (SystemTime::now(), Instant::now());
        let counters = self.proxy.metrics().tcp(&TcpLabels {
            reporter: Cow::Borrowed(target.reporter),
            destination_service: Cow::Owned(target.service.to_owned()),
            destination_service_name: Cow::Owned(target.name.to_owned()),
            connection_security_policy: Cow::Borrowed(target.security),
        });
        let (upstream_host, (bytes_received, bytes_sent), flags) = match connect.await {
            Ok((addr, up)) => (
                Some(addr),
                tcp::pump(downstream, up, counters).await,
                ResponseFlags::default(),
            ),
            Err(e) => {
                tracing::info!(%dst, error = %e, "TCP upstream connect failed (UF)");
                (
                    None,
                    (0, 0),
                    ResponseFlags::from(ResponseFlag::UpstreamConnectionFailure),
                )
            }
        };
        if let Some(log) = &self.access_log {
            observe::log_tcp(
                log,
                &TcpLog {
                    start_time,
                    started,
                    destination: dst,
                    upstream_host,
                    upstream_cluster: Some(target.cluster),
                    flags,
                    bytes_received,
                    bytes_sent,
                },
            );
        }
    }
}

/// Where the inbound path sends a captured connection: the app on loopback
/// at the port the caller asked for.
pub(crate) fn app_address(dst: SocketAddr) -> SocketAddr {
    let ip = match dst.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, dst.port())
}

/// How long the passthrough HTTP client keeps idle connections.
pub(crate) const PASSTHROUGH_IDLE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_policy_parses_istio_spellings() {
        assert_eq!("allow-any".parse(), Ok(OutboundPolicy::AllowAny));
        assert_eq!("ALLOW_ANY".parse(), Ok(OutboundPolicy::AllowAny));
        assert_eq!("registry-only".parse(), Ok(OutboundPolicy::RegistryOnly));
        assert!("deny".parse::<OutboundPolicy>().is_err());
    }

    #[test]
    fn the_app_is_on_loopback_at_the_original_port() {
        assert_eq!(
            app_address(
                "10.99.0.11:9080"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0)))
            ),
            SocketAddr::from(([127, 0, 0, 1], 9080))
        );
    }
}
