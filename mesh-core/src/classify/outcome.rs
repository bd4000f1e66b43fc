//! [`Outcome`] and [`Failure`]: the one judgement of a request that retry,
//! outlier ejection and metrics all read.

use std::error::Error as StdError;
use std::io;

use http::StatusCode;

use super::grpc_code::GrpcCode;
use crate::error::MeshError;
use crate::flags::ResponseFlag;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request succeeded.
    Success,
    /// The request failed, in this way.
    Failure(Failure),
}

impl Outcome {
    /// Whether this is [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Outcome::Success => None,
            Outcome::Failure(f) => Some(*f),
        }
    }

    /// Classifies an HTTP status the default way: 5xx fails, anything else
    /// succeeds.
    pub fn from_status(status: StatusCode) -> Outcome {
        Failure::from_status(status).map_or(Outcome::Success, Outcome::Failure)
    }

    /// Classifies a service error by walking its source chain (see
    /// [`Failure::from_error`]).
    pub fn from_error(err: &(dyn StdError + 'static)) -> Outcome {
        Outcome::Failure(Failure::from_error(err))
    }
}

/// The kind of a failed request, after Envoy's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// A 5xx response other than a gateway error.
    ServerError(StatusCode),
    /// A gateway error: 502, 503 or 504.
    GatewayError(StatusCode),
    /// The connection to the upstream could not be made.
    ConnectFailure,
    /// The upstream reset the connection or stream before a full response.
    Reset,
    /// The upstream refused the HTTP/2 stream (`REFUSED_STREAM`): it never
    /// processed the request, so retrying is always safe.
    RefusedStream,
    /// The attempt timed out.
    Timeout,
    /// A gRPC status other than the ones the classifier counts as success.
    Grpc(GrpcCode),
    /// The mesh itself refused or ended the request (overflow, no healthy
    /// endpoint, fault abort, no route…), with the flag saying which. Not the
    /// endpoint's fault.
    Mesh(ResponseFlag),
    /// An error of a kind none of the above names. Retry policies treat it as a
    /// reset: the request got no usable response.
    Other,
}

impl Failure {
    /// The failure for an HTTP status, if it is a 5xx.
    pub fn from_status(status: StatusCode) -> Option<Failure> {
        match status.as_u16() {
            502..=504 => Some(Failure::GatewayError(status)),
            500..=599 => Some(Failure::ServerError(status)),
            _ => None,
        }
    }

    /// Classifies an error by walking its source chain: a [`MeshError`] maps to
    /// its kind; `std::io` errors map by `ErrorKind` (refused → connect failure,
    /// reset/aborted/broken pipe/EOF → reset, timed out → timeout); HTTP/2 stream
    /// resets map to refused stream or reset; timeouts from tokio and tower map
    /// to timeout. Anything else is [`Failure::Other`].
    pub fn from_error(err: &(dyn StdError + 'static)) -> Failure {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(found) = Self::from_one_error(err) {
                return found;
            }
            next = err.source();
        }
        Failure::Other
    }

    fn from_one_error(err: &(dyn StdError + 'static)) -> Option<Failure> {
        if let Some(mesh) = err.downcast_ref::<MeshError>() {
            return Some(match mesh {
                MeshError::RequestTimeout(_) | MeshError::PerTryTimeout(_) => Failure::Timeout,
                MeshError::ConnectFailure(_) => Failure::ConnectFailure,
                // A reset wrapping an HTTP/2 REFUSED_STREAM is the more precise refusal.
                MeshError::UpstreamReset(source) => match Self::from_error(&**source) {
                    Failure::RefusedStream => Failure::RefusedStream,
                    _ => Failure::Reset,
                },
                // Envoy's `reset` retry condition covers a disconnect too.
                MeshError::UpstreamConnectionTermination(_) => Failure::Reset,
                MeshError::UpstreamProtocol(_) => Failure::Reset,
                other => Failure::Mesh(other.flag()),
            });
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            return match io.kind() {
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable => {
                    Some(Failure::ConnectFailure)
                }
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
                    Some(Failure::Reset)
                }
                TimedOut => Some(Failure::Timeout),
                // `io::Error::source` skips the wrapped error itself, and h2 and
                // hyper put their errors in io errors: look inside.
                _ => io
                    .get_ref()
                    .map(|inner| Self::from_error(inner))
                    .filter(|f| *f != Failure::Other),
            };
        }
        #[cfg(feature = "h2")]
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(Failure::RefusedStream);
            }
            if h2.reason().is_some() || h2.is_reset() || h2.is_go_away() {
                return Some(Failure::Reset);
            }
            return None;
        }
        if err.is::<tokio::time::error::Elapsed>() || err.is::<tower::timeout::error::Elapsed>() {
            return Some(Failure::Timeout);
        }
        None
    }

    /// The HTTP status of the failure, for the HTTP kinds.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Failure::ServerError(s) | Failure::GatewayError(s) => Some(*s),
            _ => None,
        }
    }

    /// The status to judge the failure by as HTTP: the response status, or
    /// Envoy's mapping of a gRPC code (so `UNAVAILABLE` counts as a 503 for
    /// outlier detection, as in Envoy).
    pub fn effective_status(&self) -> Option<StatusCode> {
        match self {
            Failure::Grpc(code) => Some(code.to_http_status()),
            other => other.status(),
        }
    }

    /// Whether this is a 5xx response (gateway errors included).
    pub fn is_5xx(&self) -> bool {
        matches!(self, Failure::ServerError(_) | Failure::GatewayError(_))
    }

    /// Whether this is a 502, 503 or 504 response.
    pub fn is_gateway_error(&self) -> bool {
        matches!(self, Failure::GatewayError(_))
    }

    /// Whether the upstream gave no response at all: connect failure, reset,
    /// refused stream, timeout or an unclassified error. Envoy's "local origin"
    /// errors for outlier detection.
    pub fn is_local_origin(&self) -> bool {
        matches!(
            self,
            Failure::ConnectFailure
                | Failure::Reset
                | Failure::RefusedStream
                | Failure::Timeout
                | Failure::Other
        )
    }

    /// Whether the failure is the mesh's own decision rather than the
    /// upstream's behaviour. Outlier detection ignores these.
    pub fn is_mesh(&self) -> bool {
        matches!(self, Failure::Mesh(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BoxError, Overload};
    use std::time::Duration;

    #[test]
    fn statuses_split_into_server_and_gateway_errors() {
        assert_eq!(Outcome::from_status(StatusCode::OK), Outcome::Success);
        assert_eq!(
            Outcome::from_status(StatusCode::NOT_FOUND),
            Outcome::Success
        );
        for code in [502, 503, 504] {
            let f = Failure::from_status(StatusCode::from_u16(code).unwrap()).unwrap();
            assert!(f.is_gateway_error() && f.is_5xx(), "{code}");
            assert_eq!(f.status().map(|s| s.as_u16()), Some(code));
        }
        for code in [500, 501, 505, 599] {
            let f = Failure::from_status(StatusCode::from_u16(code).unwrap()).unwrap();
            assert!(!f.is_gateway_error() && f.is_5xx(), "{code}");
            assert!(!f.is_local_origin());
        }
    }

    #[test]
    fn io_errors_map_by_kind() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, Failure::ConnectFailure),
            (io::ErrorKind::ConnectionReset, Failure::Reset),
            (io::ErrorKind::BrokenPipe, Failure::Reset),
            (io::ErrorKind::UnexpectedEof, Failure::Reset),
            (io::ErrorKind::TimedOut, Failure::Timeout),
            (io::ErrorKind::PermissionDenied, Failure::Other),
        ];
        for (kind, expected) in cases {
            let err: BoxError = io::Error::from(kind).into();
            assert_eq!(Failure::from_error(&*err), expected, "{kind:?}");
        }
    }

    #[test]
    fn mesh_errors_keep_their_kind() {
        let timeout: BoxError = MeshError::PerTryTimeout(Duration::from_millis(1)).into();
        assert_eq!(Failure::from_error(&*timeout), Failure::Timeout);
        let overflow: BoxError = MeshError::Overloaded(Overload::MaxRequests).into();
        let f = Failure::from_error(&*overflow);
        assert_eq!(f, Failure::Mesh(ResponseFlag::UpstreamOverflow));
        assert!(f.is_mesh() && !f.is_local_origin());
        let connect: BoxError =
            MeshError::ConnectFailure(io::Error::from(io::ErrorKind::ConnectionRefused).into())
                .into();
        assert_eq!(Failure::from_error(&*connect), Failure::ConnectFailure);
    }

    #[test]
    fn io_error_wrapping_an_h2_refusal_is_a_refused_stream() {
        let h2: h2::Error = h2::Reason::REFUSED_STREAM.into();
        let err: BoxError = io::Error::other(h2).into();
        assert_eq!(Failure::from_error(&*err), Failure::RefusedStream);
        let reset: BoxError =
            MeshError::UpstreamReset(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM))).into();
        assert_eq!(Failure::from_error(&*reset), Failure::RefusedStream);
        let cancel: BoxError = Box::new(h2::Error::from(h2::Reason::CANCEL));
        assert_eq!(Failure::from_error(&*cancel), Failure::Reset);
    }

    #[tokio::test]
    async fn elapsed_timers_are_timeouts() {
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err();
        let err: BoxError = elapsed.into();
        assert_eq!(Failure::from_error(&*err), Failure::Timeout);
    }

    #[test]
    fn grpc_failures_have_an_effective_status() {
        let f = Failure::Grpc(GrpcCode::Unavailable);
        assert!(!f.is_5xx());
        assert_eq!(f.effective_status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    }
}
