//! Istio's `retryOn`: which outcomes are retried.
//!
//! The decision reads mesh-core's [`Classified`] outcome (5xx, gateway error,
//! connect failure, reset, refused stream, timeout, mesh decisions) and never
//! re-derives it. Three conditions read the response itself, as Envoy does:
//! `retriable-4xx` (409) and `retriable-status-codes` read the status, and the
//! gRPC conditions read `grpc-status` from the response **headers** only
//! (a trailers-only response): a status that arrives in trailers after a body
//! does not trigger a retry in Envoy, because the response has started by then.

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;

use http::{HeaderName, Response, StatusCode};
use mesh_core::MeshError;
use mesh_core::classify::{Classified, Failure, GrpcCode, Outcome};

use crate::error::ConfigError;

/// `x-envoy-ratelimited`: a response carrying it is retried only under
/// [`RetryCondition::EnvoyRateLimited`], whatever its status.
pub const RATELIMITED_HEADER: HeaderName = HeaderName::from_static("x-envoy-ratelimited");

/// One HTTP `retryOn` condition (Envoy's `x-envoy-retry-on` tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryCondition {
    /// `5xx`: any 5xx response, or no response at all (connect failure, reset,
    /// per-try timeout).
    FiveXx,
    /// `gateway-error`: 502, 503 or 504, and also resets, connect failures and
    /// per-try timeouts (Envoy treats those like gateway errors).
    GatewayError,
    /// `reset`: the upstream reset or timed out with no response.
    Reset,
    /// `reset-before-request`: a reset before any request byte went upstream.
    /// This layer cannot see bytes on the wire, so it retries only the
    /// failures that are sure to precede the request: connect failures and
    /// refused streams.
    ResetBeforeRequest,
    /// `connect-failure`: the connection could not be made.
    ConnectFailure,
    /// `refused-stream`: HTTP/2 `REFUSED_STREAM`.
    RefusedStream,
    /// `retriable-4xx`: 409 only.
    Retriable4xx,
    /// `retriable-status-codes`: a status in the configured list.
    RetriableStatusCodes,
    /// `envoy-ratelimited`: the response carries `x-envoy-ratelimited`.
    EnvoyRateLimited,
}

impl RetryCondition {
    const ALL: [RetryCondition; 9] = [
        RetryCondition::FiveXx,
        RetryCondition::GatewayError,
        RetryCondition::Reset,
        RetryCondition::ResetBeforeRequest,
        RetryCondition::ConnectFailure,
        RetryCondition::RefusedStream,
        RetryCondition::Retriable4xx,
        RetryCondition::RetriableStatusCodes,
        RetryCondition::EnvoyRateLimited,
    ];

    /// The token as written in `retryOn`.
    pub const fn token(self) -> &'static str {
        match self {
            RetryCondition::FiveXx => "5xx",
            RetryCondition::GatewayError => "gateway-error",
            RetryCondition::Reset => "reset",
            RetryCondition::ResetBeforeRequest => "reset-before-request",
            RetryCondition::ConnectFailure => "connect-failure",
            RetryCondition::RefusedStream => "refused-stream",
            RetryCondition::Retriable4xx => "retriable-4xx",
            RetryCondition::RetriableStatusCodes => "retriable-status-codes",
            RetryCondition::EnvoyRateLimited => "envoy-ratelimited",
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// The gRPC codes Envoy's `x-envoy-retry-grpc-on` (and Istio's `retryOn`)
/// accept.
const GRPC_RETRIABLE: [GrpcCode; 5] = [
    GrpcCode::Cancelled,
    GrpcCode::DeadlineExceeded,
    GrpcCode::Internal,
    GrpcCode::ResourceExhausted,
    GrpcCode::Unavailable,
];

/// A parsed `retryOn`: HTTP conditions, gRPC codes and retriable statuses.
///
/// Parse Istio's comma list with [`str::parse`]; integers become retriable
/// status codes and turn on `retriable-status-codes`, as Istio does. An empty
/// string is Istio's default list ([`RetryOn::istio_default`]).
///
/// ```
/// use mesh_retry::{RetryCondition, RetryOn};
///
/// let on: RetryOn = "gateway-error,connect-failure,409,unavailable".parse().unwrap();
/// assert!(on.contains(RetryCondition::GatewayError));
/// assert!(on.contains(RetryCondition::RetriableStatusCodes));
/// assert_eq!(on.status_codes(), &[http::StatusCode::CONFLICT]);
///
/// let err = "5xx,sometimes".parse::<RetryOn>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown retryOn value "sometimes""#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    conditions: u16,
    /// One bit per [`GrpcCode`].
    grpc: u32,
    status_codes: Vec<StatusCode>,
}

impl RetryOn {
    /// Nothing is retried.
    pub fn none() -> Self {
        RetryOn::default()
    }

    /// Istio's default (1.24+): `connect-failure,refused-stream,unavailable,
    /// cancelled,retriable-status-codes` with no status codes (503 was dropped
    /// in 1.24).
    pub fn istio_default() -> Self {
        RetryOn::none()
            .with(RetryCondition::ConnectFailure)
            .with(RetryCondition::RefusedStream)
            .with(RetryCondition::RetriableStatusCodes)
            .with_grpc(GrpcCode::Unavailable)
            .with_grpc(GrpcCode::Cancelled)
    }

    /// Adds an HTTP condition.
    #[must_use]
    pub fn with(mut self, condition: RetryCondition) -> Self {
        self.conditions |= condition.bit();
        self
    }

    /// Adds a gRPC status code read from the response headers.
    #[must_use]
    pub fn with_grpc(mut self, code: GrpcCode) -> Self {
        self.grpc |= 1 << code as u8;
        self
    }

    /// Adds retriable status codes and turns on `retriable-status-codes`.
    #[must_use]
    pub fn with_status_codes(mut self, codes: impl IntoIterator<Item = StatusCode>) -> Self {
        for code in codes {
            if !self.status_codes.contains(&code) {
                self.status_codes.push(code);
            }
        }
        self.with(RetryCondition::RetriableStatusCodes)
    }

    /// Whether the HTTP condition is on.
    pub fn contains(&self, condition: RetryCondition) -> bool {
        self.conditions & condition.bit() != 0
    }

    /// Whether this gRPC code (in response headers) is retried.
    pub fn retries_grpc(&self, code: GrpcCode) -> bool {
        self.grpc & (1 << code as u8) != 0
    }

    /// The retriable status codes.
    pub fn status_codes(&self) -> &[StatusCode] {
        &self.status_codes
    }

    /// Whether nothing at all is retried.
    pub fn is_empty(&self) -> bool {
        self.conditions == 0 && self.grpc == 0
    }

    fn any(&self, conditions: &[RetryCondition]) -> bool {
        conditions.iter().any(|c| self.contains(*c))
    }

    /// Whether resets, unclassified errors and per-try timeouts are retried:
    /// exactly under `5xx`, `gateway-error` or `reset` (Envoy's
    /// `wouldRetryFromReset`).
    pub fn retries_resets(&self) -> bool {
        self.any(&[
            RetryCondition::FiveXx,
            RetryCondition::GatewayError,
            RetryCondition::Reset,
        ])
    }

    /// Whether a response below 400 may be retried, whatever the
    /// classifier says: a gRPC condition (read from `grpc-status`),
    /// `envoy-ratelimited`, or a retriable status code below 400.
    pub(crate) fn reads_success(&self) -> bool {
        self.grpc != 0
            || self.contains(RetryCondition::EnvoyRateLimited)
            || (self.contains(RetryCondition::RetriableStatusCodes)
                && self.status_codes.iter().any(|s| s.as_u16() < 400))
    }

    /// Whether [`should_retry_response`](Self::should_retry_response) reads
    /// its `classified` argument (only `5xx` and `gateway-error` do): when
    /// not, the retry layer skips classifying responses.
    pub(crate) fn reads_classification(&self) -> bool {
        self.any(&[RetryCondition::FiveXx, RetryCondition::GatewayError])
    }

    /// Whether a response is retried. `classified` is the classifier's
    /// judgement of the response head.
    ///
    /// In Envoy's order: a response with `x-envoy-ratelimited` is retried only
    /// under `envoy-ratelimited`; then `5xx` and `gateway-error` read the
    /// classification; `retriable-4xx` and `retriable-status-codes` read the
    /// status; the gRPC codes read `grpc-status` in the headers.
    pub fn should_retry_response<B, E>(
        &self,
        classified: &Classified<E>,
        res: &Response<B>,
    ) -> bool {
        let by_status = self.retries_status(classified, res);
        // The header is read only when it can change the answer, so a plain
        // success costs no lookup.
        if (by_status || self.contains(RetryCondition::EnvoyRateLimited))
            && res.headers().contains_key(RATELIMITED_HEADER)
        {
            return self.contains(RetryCondition::EnvoyRateLimited);
        }
        by_status
    }

    fn retries_status<B, E>(&self, classified: &Classified<E>, res: &Response<B>) -> bool {
        if let Classified::Ready(Outcome::Failure(failure)) = classified {
            if self.contains(RetryCondition::FiveXx) && failure.is_5xx() {
                return true;
            }
            if self.contains(RetryCondition::GatewayError) && failure.is_gateway_error() {
                return true;
            }
        }
        let status = res.status();
        if self.contains(RetryCondition::Retriable4xx) && status == StatusCode::CONFLICT {
            return true;
        }
        if self.contains(RetryCondition::RetriableStatusCodes)
            && self.status_codes.contains(&status)
        {
            return true;
        }
        self.grpc != 0
            && GrpcCode::from_headers(res.headers()).is_some_and(|code| self.retries_grpc(code))
    }

    /// Whether an error (no response) is retried. `failure` is the
    /// classifier's judgement of `err`.
    ///
    /// Never retried: the mesh's own decisions ([`Failure::Mesh`]: pool
    /// overflow, no healthy endpoint, fault abort…) and the route timeout
    /// ([`MeshError::RequestTimeout`]). Connect failures under
    /// `connect-failure`, refused streams under `refused-stream`, both under
    /// `reset-before-request`; every other error (reset, per-try timeout,
    /// unclassified) under `5xx`, `gateway-error` or `reset`.
    pub fn should_retry_error(&self, failure: Failure, err: &(dyn StdError + 'static)) -> bool {
        match failure {
            Failure::Mesh(_) => false,
            Failure::Timeout => {
                !matches!(MeshError::find(err), Some(MeshError::RequestTimeout(_)))
                    && self.retries_resets()
            }
            Failure::ConnectFailure => {
                self.any(&[
                    RetryCondition::ConnectFailure,
                    RetryCondition::ResetBeforeRequest,
                ]) || self.retries_resets()
            }
            Failure::RefusedStream => {
                self.any(&[
                    RetryCondition::RefusedStream,
                    RetryCondition::ResetBeforeRequest,
                ]) || self.retries_resets()
            }
            Failure::Reset | Failure::Other => self.retries_resets(),
            // Response kinds never come from errors; a future kind is not
            // retried until it is given a meaning here.
            _ => false,
        }
    }
}

impl FromStr for RetryOn {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(RetryOn::istio_default());
        }
        let mut on = RetryOn::none();
        for raw in s.split(',') {
            let token = raw.trim();
            if let Some(c) = RetryCondition::ALL.iter().find(|c| c.token() == token) {
                on = on.with(*c);
                continue;
            }
            if let Some(code) = GRPC_RETRIABLE.iter().find(|c| c.name() == token) {
                on = on.with_grpc(*code);
                continue;
            }
            if matches!(token, "retriable-headers" | "http3-post-connect-failure") {
                return Err(ConfigError::UnsupportedRetryOn(token.to_owned()));
            }
            if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
                let code = token
                    .parse::<u16>()
                    .ok()
                    .filter(|n| (100..=599).contains(n))
                    .and_then(|n| StatusCode::from_u16(n).ok())
                    .ok_or_else(|| ConfigError::InvalidStatusCode(token.to_owned()))?;
                on = on.with_status_codes([code]);
                continue;
            }
            return Err(ConfigError::UnknownRetryOn(token.to_owned()));
        }
        Ok(on)
    }
}

impl fmt::Display for RetryOn {
    /// The canonical comma list: conditions, gRPC codes, then status codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conditions = RetryCondition::ALL
            .iter()
            .filter(|c| self.contains(**c))
            .map(|c| c.token());
        let grpc = GRPC_RETRIABLE
            .iter()
            .filter(|c| self.retries_grpc(**c))
            .map(|c| c.name());
        let mut first = true;
        for token in conditions.chain(grpc) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(token)?;
        }
        for code in &self.status_codes {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}", code.as_u16())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::classify::{Classify, GrpcClassifier, HttpClassifier};
    use mesh_core::{BoxError, Overload};
    use std::io;
    use std::time::Duration;

    fn on(s: &str) -> RetryOn {
        s.parse().unwrap()
    }

    fn res(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    fn retries_response(on: &RetryOn, r: &Response<()>) -> bool {
        on.should_retry_response(&GrpcClassifier::new().classify_response(r), r)
    }

    fn retries_error(on: &RetryOn, err: BoxError) -> bool {
        let failure = HttpClassifier.classify_error(&*err).failure().unwrap();
        on.should_retry_error(failure, &*err)
    }

    fn refused() -> BoxError {
        io::Error::from(io::ErrorKind::ConnectionRefused).into()
    }

    fn reset() -> BoxError {
        io::Error::from(io::ErrorKind::ConnectionReset).into()
    }

    fn per_try() -> BoxError {
        MeshError::PerTryTimeout(Duration::from_millis(10)).into()
    }

    #[test]
    fn parses_every_istio_token() {
        let all = "5xx,gateway-error,reset,reset-before-request,connect-failure,refused-stream,\
                   retriable-4xx,retriable-status-codes,envoy-ratelimited,\
                   cancelled,deadline-exceeded,internal,resource-exhausted,unavailable";
        let parsed = on(all);
        for c in RetryCondition::ALL {
            assert!(parsed.contains(c), "{c:?}");
        }
        for g in GRPC_RETRIABLE {
            assert!(parsed.retries_grpc(g), "{g:?}");
        }
        assert!(!parsed.retries_grpc(GrpcCode::NotFound));
        assert_eq!(parsed.to_string().parse::<RetryOn>().unwrap(), parsed);
    }

    #[test]
    fn integers_become_retriable_status_codes() {
        let parsed = on("connect-failure, 503 ,409");
        assert!(parsed.contains(RetryCondition::RetriableStatusCodes));
        assert_eq!(
            parsed.status_codes(),
            &[StatusCode::SERVICE_UNAVAILABLE, StatusCode::CONFLICT]
        );
        assert_eq!(
            parsed.to_string(),
            "connect-failure,retriable-status-codes,503,409"
        );
    }

    #[test]
    fn bad_tokens_are_errors_naming_the_value() {
        assert_eq!(
            "5xx,bogus".parse::<RetryOn>(),
            Err(ConfigError::UnknownRetryOn("bogus".into()))
        );
        assert_eq!(
            "5xx,,reset".parse::<RetryOn>(),
            Err(ConfigError::UnknownRetryOn("".into()))
        );
        assert_eq!(
            "600".parse::<RetryOn>(),
            Err(ConfigError::InvalidStatusCode("600".into()))
        );
        assert_eq!(
            "99".parse::<RetryOn>(),
            Err(ConfigError::InvalidStatusCode("99".into()))
        );
        assert_eq!(
            "retriable-headers".parse::<RetryOn>(),
            Err(ConfigError::UnsupportedRetryOn("retriable-headers".into()))
        );
        // Case matters, as in Envoy.
        assert!("5XX".parse::<RetryOn>().is_err());
        let msg = "reset,not-found"
            .parse::<RetryOn>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"not-found\""), "{msg}");
    }

    #[test]
    fn empty_is_istios_default() {
        let d = on("");
        assert_eq!(d, RetryOn::istio_default());
        assert_eq!(
            d.to_string(),
            "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
        );
        assert!(
            d.status_codes().is_empty(),
            "503 is not in the 1.24+ default"
        );
        assert!(!retries_response(&d, &res(503)));
        assert!(retries_error(&d, refused()));
    }

    #[test]
    fn a_503_is_not_retried_under_connect_failure_but_a_refused_connection_is() {
        let cf = on("connect-failure");
        assert!(!retries_response(&cf, &res(503)));
        assert!(retries_error(&cf, refused()));
        assert!(!retries_error(&cf, reset()));
        assert!(!retries_error(&cf, per_try()));
    }

    #[test]
    fn status_conditions_map_exactly() {
        let five = on("5xx");
        for s in [500, 501, 502, 503, 504, 599] {
            assert!(retries_response(&five, &res(s)), "{s}");
        }
        for s in [200, 404, 409, 429] {
            assert!(!retries_response(&five, &res(s)), "{s}");
        }
        let gw = on("gateway-error");
        assert!(retries_response(&gw, &res(502)));
        assert!(retries_response(&gw, &res(504)));
        assert!(!retries_response(&gw, &res(500)));
        let r4 = on("retriable-4xx");
        assert!(retries_response(&r4, &res(409)));
        assert!(!retries_response(&r4, &res(400)));
        assert!(!retries_response(&r4, &res(503)));
        let codes = on("429,retriable-status-codes");
        assert!(retries_response(&codes, &res(429)));
        assert!(!retries_response(&codes, &res(503)));
        let reset_only = on("reset");
        assert!(!retries_response(&reset_only, &res(503)));
    }

    #[test]
    fn ratelimited_responses_need_their_own_token() {
        let mut limited = res(503);
        limited
            .headers_mut()
            .insert(RATELIMITED_HEADER, "true".parse().unwrap());
        assert!(!retries_response(&on("5xx,503"), &limited));
        assert!(retries_response(&on("envoy-ratelimited"), &limited));
        assert!(!retries_response(&on("envoy-ratelimited"), &res(503)));
    }

    #[test]
    fn errors_map_exactly() {
        for token in ["5xx", "gateway-error", "reset"] {
            let o = on(token);
            assert!(retries_error(&o, reset()), "{token}");
            assert!(retries_error(&o, refused()), "{token}");
            assert!(retries_error(&o, per_try()), "{token}");
            assert!(
                retries_error(&o, io::Error::other("?").into()),
                "{token}: Other is a reset"
            );
        }
        let refused_stream: BoxError = Box::new(h2_refused());
        assert!(retries_error(&on("refused-stream"), refused_stream));
        assert!(!retries_error(&on("refused-stream"), reset()));
        assert!(retries_error(&on("reset-before-request"), refused()));
        assert!(!retries_error(&on("reset-before-request"), reset()));
        assert!(!retries_error(&on("refused-stream"), per_try()));
        assert!(!retries_error(&on("retriable-4xx,503"), reset()));
    }

    fn h2_refused() -> MeshError {
        MeshError::UpstreamReset(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)))
    }

    #[test]
    fn mesh_decisions_and_route_timeouts_are_never_retried() {
        let everything =
            on("5xx,gateway-error,reset,connect-failure,refused-stream,reset-before-request");
        let overflow: BoxError = MeshError::Overloaded(Overload::MaxRequests).into();
        assert!(!retries_error(&everything, overflow));
        let no_host: BoxError = MeshError::NoHealthyEndpoint.into();
        assert!(!retries_error(&everything, no_host));
        let route: BoxError = MeshError::RequestTimeout(Duration::from_secs(1)).into();
        assert!(!retries_error(&everything, route));
        assert!(retries_error(&everything, per_try()));
    }

    #[test]
    fn grpc_codes_are_read_from_headers_only() {
        let grpc = |code: &'static str| {
            Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", code)
                .body(())
                .unwrap()
        };
        let o = on("unavailable,cancelled");
        assert!(retries_response(&o, &grpc("14")));
        assert!(retries_response(&o, &grpc("1")));
        assert!(!retries_response(&o, &grpc("13")));
        assert!(!retries_response(&o, &grpc("0")));
        // No grpc-status in the headers: the status will come in trailers, too late.
        let streaming = Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert!(!retries_response(&o, &streaming));
        // The HTTP classifier does not read gRPC; the header still decides, as in Envoy.
        let r = grpc("14");
        assert!(o.should_retry_response(&HttpClassifier.classify_response(&r), &r));
    }
}
