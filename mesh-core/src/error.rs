//! The errors the mesh itself decides, and what a client sees for each.
//!
//! Layers return [`MeshError`] (boxed into a [`BoxError`] between layers, as tower
//! does); the edge of a stack turns it into a response with
//! [`MeshError::to_response`], which carries the Envoy status, body text and
//! response flag. [`MeshError::find`] digs one out of a boxed error chain.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::flags::{RESPONSE_FLAGS_HEADER, ResponseFlag, ResponseFlags};

/// The error type between tower layers: any error, boxed.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// `x-envoy-overloaded: true`, which Envoy adds to circuit-breaker refusals.
pub const OVERLOADED_HEADER: HeaderName = HeaderName::from_static("x-envoy-overloaded");

/// Why a request was refused for overload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overload {
    /// The maximum of concurrent requests was reached.
    MaxRequests,
    /// The maximum of requests waiting for capacity was reached.
    MaxPendingRequests,
    /// The maximum of concurrent retries was reached.
    MaxRetries,
    /// The maximum of connections was reached.
    MaxConnections,
    /// A circuit breaker is open.
    CircuitOpen,
}

impl Overload {
    fn describe(self) -> &'static str {
        match self {
            Overload::MaxRequests => "maximum concurrent requests reached",
            Overload::MaxPendingRequests => "maximum pending requests reached",
            Overload::MaxRetries => "maximum concurrent retries reached",
            Overload::MaxConnections => "maximum connections reached",
            Overload::CircuitOpen => "circuit breaker open",
        }
    }
}

/// What the mesh decided about a request, with the status a client sees and the
/// Envoy response flag.
///
/// | variant | status | flag |
/// |---|---|---|
/// | [`RequestTimeout`](MeshError::RequestTimeout), [`PerTryTimeout`](MeshError::PerTryTimeout) | 504 | `UT` |
/// | [`Overloaded`](MeshError::Overloaded) | 503 (+ `x-envoy-overloaded: true`) | `UO` |
/// | [`NoHealthyEndpoint`](MeshError::NoHealthyEndpoint) | 503 | `UH` |
/// | [`RetryBudgetExhausted`](MeshError::RetryBudgetExhausted) | 503 | `URX` |
/// | [`FaultAbort`](MeshError::FaultAbort) | the configured status | `FI` |
/// | [`ConnectFailure`](MeshError::ConnectFailure) | 503 | `UF` |
/// | [`UpstreamReset`](MeshError::UpstreamReset) | 503 | `UR` |
/// | [`UpstreamConnectionTermination`](MeshError::UpstreamConnectionTermination) | 503 | `UC` |
/// | [`UpstreamProtocol`](MeshError::UpstreamProtocol) | 502 | `UPE` |
/// | [`NoRoute`](MeshError::NoRoute) | 404 | `NR` |
///
/// ```
/// use mesh_core::{MeshError, ResponseFlag};
///
/// let err = MeshError::NoHealthyEndpoint;
/// assert_eq!(err.status().as_u16(), 503);
/// assert_eq!(err.flag(), ResponseFlag::NoHealthyUpstream);
/// let res = err.to_response::<String>();
/// assert_eq!(res.headers()["x-mesh-response-flags"], "UH");
/// assert_eq!(res.body(), "no healthy upstream");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum MeshError {
    /// The overall request timeout passed (all attempts and backoffs included).
    RequestTimeout(Duration),
    /// One attempt's timeout passed before response headers arrived.
    PerTryTimeout(Duration),
    /// A connection-pool limit or an open circuit refused the request.
    Overloaded(Overload),
    /// No endpoint of the destination was ready (none known, all ejected).
    NoHealthyEndpoint,
    /// A retry was needed but the retry budget refused it, and no upstream
    /// response exists to return instead.
    RetryBudgetExhausted,
    /// Fault injection aborted the request with this status.
    FaultAbort(StatusCode),
    /// The connection to the upstream could not be made.
    ConnectFailure(BoxError),
    /// The upstream reset the stream or connection before a response.
    UpstreamReset(BoxError),
    /// The upstream closed the connection before a whole response (Envoy's
    /// "connection termination").
    UpstreamConnectionTermination(BoxError),
    /// The upstream spoke the protocol wrongly.
    UpstreamProtocol(BoxError),
    /// No route matched the request.
    NoRoute,
}

impl MeshError {
    /// The HTTP status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            MeshError::RequestTimeout(_) | MeshError::PerTryTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            MeshError::Overloaded(_)
            | MeshError::NoHealthyEndpoint
            | MeshError::RetryBudgetExhausted
            | MeshError::ConnectFailure(_)
            | MeshError::UpstreamReset(_)
            | MeshError::UpstreamConnectionTermination(_) => StatusCode::SERVICE_UNAVAILABLE,
            MeshError::FaultAbort(status) => *status,
            MeshError::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            MeshError::NoRoute => StatusCode::NOT_FOUND,
        }
    }

    /// The Envoy response flag.
    pub fn flag(&self) -> ResponseFlag {
        match self {
            MeshError::RequestTimeout(_) | MeshError::PerTryTimeout(_) => {
                ResponseFlag::UpstreamRequestTimeout
            }
            MeshError::Overloaded(_) => ResponseFlag::UpstreamOverflow,
            MeshError::NoHealthyEndpoint => ResponseFlag::NoHealthyUpstream,
            MeshError::RetryBudgetExhausted => ResponseFlag::UpstreamRetryLimitExceeded,
            MeshError::FaultAbort(_) => ResponseFlag::FaultInjected,
            MeshError::ConnectFailure(_) => ResponseFlag::UpstreamConnectionFailure,
            MeshError::UpstreamReset(_) => ResponseFlag::UpstreamRemoteReset,
            MeshError::UpstreamConnectionTermination(_) => {
                ResponseFlag::UpstreamConnectionTermination
            }
            MeshError::UpstreamProtocol(_) => ResponseFlag::UpstreamProtocolError,
            MeshError::NoRoute => ResponseFlag::NoRouteFound,
        }
    }

    /// The response body text, Envoy's wording where Envoy has one.
    pub fn body_text(&self) -> &'static str {
        match self {
            MeshError::RequestTimeout(_) | MeshError::PerTryTimeout(_) => {
                "upstream request timeout"
            }
            MeshError::Overloaded(_) => "upstream overflow",
            MeshError::NoHealthyEndpoint => "no healthy upstream",
            MeshError::RetryBudgetExhausted => "retry budget exhausted",
            MeshError::FaultAbort(_) => "fault filter abort",
            MeshError::ConnectFailure(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
            }
            MeshError::UpstreamReset(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
            }
            MeshError::UpstreamConnectionTermination(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            MeshError::UpstreamProtocol(_) => "upstream protocol error",
            MeshError::NoRoute => "",
        }
    }

    /// Whether the failure happened at the transport level of the upstream
    /// (connect failure, reset, timeout): Envoy's "local origin" errors.
    pub fn is_local_origin(&self) -> bool {
        matches!(
            self,
            MeshError::ConnectFailure(_)
                | MeshError::UpstreamReset(_)
                | MeshError::UpstreamConnectionTermination(_)
                | MeshError::PerTryTimeout(_)
                | MeshError::RequestTimeout(_)
        )
    }

    /// The response a client sees: status, body text, the response flag in
    /// [`RESPONSE_FLAGS_HEADER`] and in the response extensions, and
    /// `x-envoy-overloaded: true` for overload.
    pub fn to_response<B: From<&'static str>>(&self) -> Response<B> {
        let flags = ResponseFlags::from(self.flag());
        let mut res = Response::new(B::from(self.body_text()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            RESPONSE_FLAGS_HEADER,
            HeaderValue::from_static(self.flag().code()),
        );
        if !self.body_text().is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
        }
        if matches!(self, MeshError::Overloaded(_)) {
            headers.insert(OVERLOADED_HEADER, HeaderValue::from_static("true"));
        }
        res.extensions_mut().insert(flags);
        res
    }

    /// Finds a `MeshError` in an error or its chain of sources.
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a MeshError> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(mesh) = err.downcast_ref::<MeshError>() {
                return Some(mesh);
            }
            next = err.source();
        }
        None
    }
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeshError::RequestTimeout(d) => write!(f, "request timed out after {d:?}"),
            MeshError::PerTryTimeout(d) => write!(f, "attempt timed out after {d:?}"),
            MeshError::Overloaded(why) => write!(f, "overloaded: {}", why.describe()),
            MeshError::NoHealthyEndpoint => f.write_str("no healthy upstream endpoint"),
            MeshError::RetryBudgetExhausted => f.write_str("retry budget exhausted"),
            MeshError::FaultAbort(status) => write!(f, "aborted by fault injection with {status}"),
            MeshError::ConnectFailure(e) => write!(f, "upstream connect failure: {e}"),
            MeshError::UpstreamReset(e) => write!(f, "upstream reset: {e}"),
            MeshError::UpstreamConnectionTermination(e) => {
                write!(f, "upstream connection terminated: {e}")
            }
            MeshError::UpstreamProtocol(e) => write!(f, "upstream protocol error: {e}"),
            MeshError::NoRoute => f.write_str("no route matched"),
        }
    }
}

impl StdError for MeshError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            MeshError::ConnectFailure(e)
            | MeshError::UpstreamReset(e)
            | MeshError::UpstreamConnectionTermination(e)
            | MeshError::UpstreamProtocol(e) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io;

    fn io_err() -> BoxError {
        io::Error::from(io::ErrorKind::ConnectionRefused).into()
    }

    #[test]
    fn every_variant_maps_to_envoy_status_and_flag() {
        let cases: Vec<(MeshError, u16, &str)> = vec![
            (MeshError::RequestTimeout(Duration::from_secs(1)), 504, "UT"),
            (
                MeshError::PerTryTimeout(Duration::from_millis(5)),
                504,
                "UT",
            ),
            (MeshError::Overloaded(Overload::MaxRequests), 503, "UO"),
            (MeshError::Overloaded(Overload::CircuitOpen), 503, "UO"),
            (MeshError::NoHealthyEndpoint, 503, "UH"),
            (MeshError::RetryBudgetExhausted, 503, "URX"),
            (MeshError::FaultAbort(StatusCode::IM_A_TEAPOT), 418, "FI"),
            (MeshError::ConnectFailure(io_err()), 503, "UF"),
            (MeshError::UpstreamReset(io_err()), 503, "UR"),
            (
                MeshError::UpstreamConnectionTermination(io_err()),
                503,
                "UC",
            ),
            (MeshError::UpstreamProtocol(io_err()), 502, "UPE"),
            (MeshError::NoRoute, 404, "NR"),
        ];
        for (err, status, flag) in cases {
            let res = err.to_response::<Bytes>();
            assert_eq!(res.status().as_u16(), status, "{err}");
            assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], flag, "{err}");
            assert_eq!(
                res.extensions()
                    .get::<ResponseFlags>()
                    .map(|f| f.to_string()),
                Some(flag.to_string())
            );
            assert_eq!(res.body().as_ref(), err.body_text().as_bytes());
        }
    }

    #[test]
    fn overload_carries_envoy_header() {
        let res = MeshError::Overloaded(Overload::MaxPendingRequests).to_response::<Bytes>();
        assert_eq!(res.headers()[OVERLOADED_HEADER], "true");
        let res = MeshError::NoHealthyEndpoint.to_response::<Bytes>();
        assert!(res.headers().get(OVERLOADED_HEADER).is_none());
    }

    #[test]
    fn find_walks_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(MeshError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let boxed: BoxError = Box::new(Wrapper(MeshError::NoRoute));
        assert!(matches!(MeshError::find(&*boxed), Some(MeshError::NoRoute)));
        let other: BoxError = io_err();
        assert!(MeshError::find(&*other).is_none());
    }

    #[test]
    fn local_origin_is_transport_level() {
        assert!(MeshError::ConnectFailure(io_err()).is_local_origin());
        assert!(MeshError::PerTryTimeout(Duration::ZERO).is_local_origin());
        assert!(!MeshError::NoHealthyEndpoint.is_local_origin());
        assert!(!MeshError::Overloaded(Overload::MaxRetries).is_local_origin());
    }
}
