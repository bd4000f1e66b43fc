//! Outcome classification: one judgement of each request, read by retry,
//! outlier ejection and metrics alike.
//!
//! The shape follows tower-http's `classify` module: a [`Classify`] looks at the
//! response head and either decides at once ([`Classified::Ready`]) or defers
//! to the end of the body ([`Classified::RequiresEos`]) with a [`ClassifyEos`]
//! that reads the trailers (gRPC puts its status there). Unlike tower-http, the
//! result is a small `Copy` [`Outcome`] with Envoy's failure kinds (5xx,
//! gateway error, connect failure, reset, refused stream, timeout, gRPC
//! status), not a string.
//!
//! [`ClassifyBody`] wraps a response body and reports the outcome when the body
//! ends, so consumers that need the final word (outlier detection, metrics) get
//! it for streaming responses too.
//!
//! ```
//! use http::{Response, StatusCode};
//! use mesh_core::classify::{Classified, Classify, Failure, HttpClassifier, Outcome};
//!
//! let res = Response::builder().status(503).body(()).unwrap();
//! match HttpClassifier.classify_response(&res) {
//!     Classified::Ready(Outcome::Failure(f)) => assert!(f.is_gateway_error()),
//!     _ => unreachable!(),
//! }
//! ```

mod body;
mod grpc;
mod grpc_code;
mod outcome;

use std::convert::Infallible;
use std::error::Error as StdError;

use http::{HeaderMap, Response};

pub use self::body::ClassifyBody;
pub use self::grpc::{GrpcClassifier, GrpcEos};
pub use self::grpc_code::{GRPC_STATUS, GrpcCode};
pub use self::outcome::{Failure, Outcome};
use crate::error::{BoxError, MeshError};

/// The result of looking at a response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified<E> {
    /// The outcome is known from the head.
    Ready(Outcome),
    /// The outcome is known only when the body ends; `E` decides it then.
    RequiresEos(E),
}

impl<E: ClassifyEos> Classified<E> {
    /// The outcome, deciding a deferred one as if the body ended with these
    /// trailers.
    pub fn resolve(self, trailers: Option<&HeaderMap>) -> Outcome {
        match self {
            Classified::Ready(outcome) => outcome,
            Classified::RequiresEos(eos) => eos.classify_eos(trailers),
        }
    }
}

/// Turns a service's result (a response or an error) into an [`Outcome`].
///
/// Implementations are cheap to clone and carry their configuration; one is
/// used per request.
pub trait Classify: Clone + Send + Sync + 'static {
    /// What decides the outcome at the end of the body.
    type Eos: ClassifyEos;

    /// Classifies a response head.
    fn classify_response<B>(&self, res: &Response<B>) -> Classified<Self::Eos>;

    /// Classifies an error returned instead of a response. The default walks the
    /// error chain with [`Failure::from_error`].
    fn classify_error(&self, err: &(dyn StdError + 'static)) -> Outcome {
        Outcome::from_error(err)
    }

    /// Whether this classifier names a response a 5xx failure
    /// ([`Failure::ServerError`] or [`Failure::GatewayError`]) only when its
    /// status is 5xx. A caller asking only about 5xx failures (a retry under
    /// `5xx` or `gateway-error`) may then skip classifying a response below
    /// 500. `false` unless the classifier says so.
    fn server_errors_by_status(&self) -> bool {
        false
    }

    /// Classifies a service's whole result.
    fn classify_result<B, E: AsErrorRef>(
        &self,
        result: &Result<Response<B>, E>,
    ) -> Classified<Self::Eos> {
        match result {
            Ok(res) => self.classify_response(res),
            Err(err) => Classified::Ready(self.classify_error(err.as_error_ref())),
        }
    }
}

/// Decides an outcome when a response body ends.
pub trait ClassifyEos: Send + 'static {
    /// The body ended, with these trailers if it had any.
    fn classify_eos(self, trailers: Option<&HeaderMap>) -> Outcome;

    /// The body failed with an error.
    fn classify_error(self, err: &(dyn StdError + 'static)) -> Outcome
    where
        Self: Sized,
    {
        Outcome::from_error(err)
    }
}

/// A [`ClassifyEos`] for classifiers that always decide at the head; it cannot
/// be constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeverEos {}

impl ClassifyEos for NeverEos {
    fn classify_eos(self, _: Option<&HeaderMap>) -> Outcome {
        match self {}
    }
}

/// Errors a [`Classify`] can read: anything that can lend a `&dyn Error`.
pub trait AsErrorRef {
    /// The error as a trait object.
    fn as_error_ref(&self) -> &(dyn StdError + 'static);
}

impl AsErrorRef for BoxError {
    fn as_error_ref(&self) -> &(dyn StdError + 'static) {
        &**self
    }
}

impl AsErrorRef for MeshError {
    fn as_error_ref(&self) -> &(dyn StdError + 'static) {
        self
    }
}

impl AsErrorRef for std::io::Error {
    fn as_error_ref(&self) -> &(dyn StdError + 'static) {
        self
    }
}

impl AsErrorRef for Infallible {
    fn as_error_ref(&self) -> &(dyn StdError + 'static) {
        match *self {}
    }
}

/// The default HTTP classifier: a 5xx status fails (502/503/504 as gateway
/// errors), any other status succeeds; errors are classified by their chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpClassifier;

impl Classify for HttpClassifier {
    type Eos = NeverEos;

    fn classify_response<B>(&self, res: &Response<B>) -> Classified<NeverEos> {
        Classified::Ready(Outcome::from_status(res.status()))
    }

    fn server_errors_by_status(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn http_classifier_names_5xx_failures_by_status_only() {
        assert!(HttpClassifier.server_errors_by_status());
        for status in 100..600 {
            let mut res = Response::new(());
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            let failed = matches!(
                HttpClassifier.classify_response(&res),
                Classified::Ready(Outcome::Failure(f)) if f.is_5xx()
            );
            assert_eq!(failed, status >= 500, "{status}");
        }
    }

    #[test]
    fn http_classifier_reads_the_status_and_errors() {
        let ok: Result<Response<()>, BoxError> = Ok(Response::new(()));
        assert_eq!(
            HttpClassifier.classify_result(&ok),
            Classified::Ready(Outcome::Success)
        );
        let err: Result<Response<()>, BoxError> =
            Err(io::Error::from(io::ErrorKind::ConnectionRefused).into());
        assert_eq!(
            HttpClassifier.classify_result(&err),
            Classified::Ready(Outcome::Failure(Failure::ConnectFailure))
        );
        let mesh: Result<Response<()>, MeshError> = Err(MeshError::NoHealthyEndpoint);
        assert_eq!(
            HttpClassifier.classify_result(&mesh).resolve(None),
            Outcome::Failure(Failure::Mesh(crate::ResponseFlag::NoHealthyUpstream))
        );
        let res = Response::builder().status(500).body(()).unwrap();
        assert_eq!(
            HttpClassifier.classify_response(&res).resolve(None),
            Outcome::Failure(Failure::ServerError(
                http::StatusCode::INTERNAL_SERVER_ERROR
            ))
        );
    }
}
