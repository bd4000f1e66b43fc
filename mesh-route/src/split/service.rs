use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use mesh_core::ReadyOneshot;
use rand::RngExt;
use tower::Service;

use crate::config::{ConfigError, ConfigErrorKind, Headers};
use crate::headers::{ResponseFuture, apply_to_request};

/// One destination of a split.
struct Arm<S> {
    service: S,
    /// The running sum of weights up to and including this arm.
    upto: u64,
    headers: Option<Arc<Headers>>,
}

/// Sends each request to one of several services, picked by relative weight.
/// See the [module docs](crate::split).
pub struct Split<S> {
    arms: Arc<[Arm<S>]>,
    total: u64,
}

impl<S> Split<S> {
    /// A split over `(service, weight)` pairs.
    pub fn new(arms: impl IntoIterator<Item = (S, u32)>) -> Result<Self, ConfigError> {
        Self::with_headers(arms.into_iter().map(|(s, w)| (s, w, Headers::default())))
    }

    /// A split over `(service, weight, header operations)`: the operations
    /// apply only to requests sent to (and responses from) that service.
    pub fn with_headers(
        arms: impl IntoIterator<Item = (S, u32, Headers)>,
    ) -> Result<Self, ConfigError> {
        let mut total = 0u64;
        let arms: Vec<Arm<S>> = arms
            .into_iter()
            .map(|(service, weight, headers)| {
                total += u64::from(weight);
                Arm {
                    service,
                    upto: total,
                    headers: (!headers.is_empty()).then(|| Arc::new(headers)),
                }
            })
            .collect();
        match arms.len() {
            0 => Err(ConfigErrorKind::NoDestination.into()),
            1 => Ok(Split {
                arms: arms.into(),
                total: 0,
            }),
            _ if total == 0 => Err(ConfigErrorKind::ZeroWeights.into()),
            _ => Ok(Split {
                arms: arms.into(),
                total,
            }),
        }
    }

    /// How many destinations there are.
    pub fn len(&self) -> usize {
        self.arms.len()
    }

    /// Always false: a split has at least one destination.
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    /// The index of the destination for the next request: one draw.
    #[inline]
    fn pick(&self) -> usize {
        if self.arms.len() == 1 {
            return 0;
        }
        let draw = rand::rng().random_range(0..self.total);
        // Zero-weight arms have an empty interval and are never picked.
        self.arms
            .iter()
            .position(|a| draw < a.upto)
            .unwrap_or(self.arms.len() - 1)
    }
}

impl<S> Clone for Split<S> {
    fn clone(&self) -> Self {
        Split {
            arms: self.arms.clone(),
            total: self.total,
        }
    }
}

impl<S> fmt::Debug for Split<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let weights: Vec<u64> = self
            .arms
            .iter()
            .scan(0, |prev, a| {
                let w = a.upto - *prev;
                *prev = a.upto;
                Some(w)
            })
            .collect();
        f.debug_struct("Split").field("weights", &weights).finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Split<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ReadyOneshot<S, Request<ReqBody>>>;

    /// Always ready: the destination is picked in `call` and a clone of it is
    /// driven to readiness there (see the [module docs](crate::split)).
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let i = self.pick();
        let arm = &self.arms[i];
        if let Some(h) = &arm.headers {
            apply_to_request(&h.request, &mut req);
        }
        let headers = arm.headers.clone().filter(|h| !h.response.is_empty());
        ResponseFuture::new(ReadyOneshot::new(arm.service.clone(), req), headers)
    }
}
