//! The gRPC-aware classifier.

use http::{HeaderMap, Response, StatusCode, header::CONTENT_TYPE};

use super::{Classified, Classify, ClassifyEos, Failure, GrpcCode, Outcome};

/// Classifies gRPC responses by `grpc-status` (in the headers of a
/// trailers-only response, else in the trailers at the end of the body) and
/// everything else as [`HttpClassifier`](super::HttpClassifier) does.
///
/// A response is gRPC when its `content-type` starts with `application/grpc`.
/// By default every code but `OK` is a failure; [`success_on`](Self::success_on)
/// adds codes that count as success (say `NOT_FOUND` for a lookup service).
/// A gRPC body that ends without a status is `UNKNOWN`, as gRPC clients read it.
///
/// ```
/// use http::{HeaderMap, Response};
/// use mesh_core::classify::{Classified, Classify, ClassifyEos, Failure, GrpcClassifier, GrpcCode, Outcome};
///
/// let res = Response::builder().header("content-type", "application/grpc").body(()).unwrap();
/// let Classified::RequiresEos(eos) = GrpcClassifier::new().classify_response(&res) else { unreachable!() };
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// assert_eq!(eos.classify_eos(Some(&trailers)), Outcome::Failure(Failure::Grpc(GrpcCode::Unavailable)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcClassifier {
    success: u32,
}

impl GrpcClassifier {
    /// Only `OK` succeeds.
    pub const fn new() -> Self {
        GrpcClassifier {
            success: 1 << GrpcCode::Ok as u8,
        }
    }

    /// Counts `code` as a success too.
    #[must_use]
    pub const fn success_on(mut self, code: GrpcCode) -> Self {
        self.success |= 1 << code as u8;
        self
    }

    fn outcome(self, code: GrpcCode) -> Outcome {
        if self.success & (1 << code as u8) != 0 {
            Outcome::Success
        } else {
            Outcome::Failure(Failure::Grpc(code))
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

impl Classify for GrpcClassifier {
    type Eos = GrpcEos;

    fn classify_response<B>(&self, res: &Response<B>) -> Classified<GrpcEos> {
        if !is_grpc(res.headers()) {
            return Classified::Ready(Outcome::from_status(res.status()));
        }
        if let Some(failure) = Failure::from_status(res.status()) {
            return Classified::Ready(Outcome::Failure(failure));
        }
        if res.status() != StatusCode::OK {
            return Classified::Ready(self.outcome(GrpcCode::from_http_status(res.status())));
        }
        match GrpcCode::from_headers(res.headers()) {
            Some(code) => Classified::Ready(self.outcome(code)),
            None => Classified::RequiresEos(GrpcEos { classifier: *self }),
        }
    }

    /// A gRPC status is a [`Failure::Grpc`], never a 5xx.
    fn server_errors_by_status(&self) -> bool {
        true
    }
}

/// Reads `grpc-status` from the trailers when a gRPC body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcEos {
    classifier: GrpcClassifier,
}

impl ClassifyEos for GrpcEos {
    fn classify_eos(self, trailers: Option<&HeaderMap>) -> Outcome {
        let code = trailers
            .and_then(GrpcCode::from_headers)
            .unwrap_or(GrpcCode::Unknown);
        self.classifier.outcome(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn grpc(status: u16, grpc_status: Option<&'static str>) -> Response<()> {
        let mut b = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/grpc+proto");
        if let Some(s) = grpc_status {
            b = b.header("grpc-status", s);
        }
        b.body(()).unwrap()
    }

    fn trailers(code: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(code));
        h
    }

    #[test]
    fn below_500_nothing_is_a_server_error_as_promised() {
        let classifiers = [
            GrpcClassifier::new(),
            GrpcClassifier::new().success_on(GrpcCode::Unavailable),
        ];
        let grpc_statuses = [
            None,
            Some("0"),
            Some("2"),
            Some("13"),
            Some("14"),
            Some("x"),
        ];
        for c in classifiers {
            assert!(c.server_errors_by_status());
            for status in 100..500 {
                for g in grpc_statuses {
                    let mut plain = Response::new(());
                    *plain.status_mut() = StatusCode::from_u16(status).unwrap();
                    for res in [grpc(status, g), plain] {
                        let failure = match c.classify_response(&res) {
                            Classified::Ready(Outcome::Failure(f)) => Some(f),
                            _ => None,
                        };
                        assert!(
                            !failure.is_some_and(|f| f.is_5xx() || f.is_gateway_error()),
                            "{status} {g:?}: {failure:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn trailers_only_responses_decide_at_the_head() {
        let c = GrpcClassifier::new();
        assert_eq!(
            c.classify_response(&grpc(200, Some("0"))),
            Classified::Ready(Outcome::Success)
        );
        assert_eq!(
            c.classify_response(&grpc(200, Some("4"))),
            Classified::Ready(Outcome::Failure(Failure::Grpc(GrpcCode::DeadlineExceeded)))
        );
    }

    #[test]
    fn status_in_trailers_decides_at_eos() {
        let c = GrpcClassifier::new();
        let Classified::RequiresEos(eos) = c.classify_response(&grpc(200, None)) else {
            panic!("must defer");
        };
        assert_eq!(eos.classify_eos(Some(&trailers("0"))), Outcome::Success);
        assert_eq!(
            eos.classify_eos(Some(&trailers("13"))),
            Outcome::Failure(Failure::Grpc(GrpcCode::Internal))
        );
        assert_eq!(
            eos.classify_eos(None),
            Outcome::Failure(Failure::Grpc(GrpcCode::Unknown)),
            "a gRPC body without a status is UNKNOWN"
        );
    }

    #[test]
    fn http_errors_on_grpc_and_plain_responses() {
        let c = GrpcClassifier::new();
        assert_eq!(
            c.classify_response(&grpc(503, None)),
            Classified::Ready(Outcome::Failure(Failure::GatewayError(
                StatusCode::SERVICE_UNAVAILABLE
            )))
        );
        assert_eq!(
            c.classify_response(&grpc(404, None)),
            Classified::Ready(Outcome::Failure(Failure::Grpc(GrpcCode::Unimplemented)))
        );
        let plain = Response::builder().status(500).body(()).unwrap();
        assert_eq!(
            c.classify_response(&plain).resolve(None),
            Outcome::Failure(Failure::ServerError(StatusCode::INTERNAL_SERVER_ERROR))
        );
    }

    #[test]
    fn configured_codes_count_as_success() {
        let c = GrpcClassifier::new().success_on(GrpcCode::NotFound);
        assert_eq!(
            c.classify_response(&grpc(200, Some("5"))),
            Classified::Ready(Outcome::Success)
        );
        assert_eq!(
            c.classify_response(&grpc(200, Some("14"))),
            Classified::Ready(Outcome::Failure(Failure::Grpc(GrpcCode::Unavailable)))
        );
    }
}
