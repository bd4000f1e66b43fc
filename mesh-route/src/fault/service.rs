use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use mesh_core::BoxError;
use tower::Service;

use super::ResponseFuture;
use super::layer::Compiled;
use crate::config::{ConfigError, FaultConfig};

/// Injects delays and aborts before calling the inner service. See the
/// [module docs](crate::fault).
///
/// A delayed request is sent, once the delay is over, through a clone of the
/// inner service driven to readiness then (`oneshot`): the readiness this
/// service reserved in `poll_ready` stays for the next request rather than
/// being held through the delay.
#[derive(Clone, Debug)]
pub struct Fault<S> {
    pub(crate) inner: S,
    pub(crate) config: Option<Arc<Compiled>>,
}

impl<S> Fault<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: FaultConfig) -> Result<Self, ConfigError> {
        Ok(tower::Layer::layer(&super::FaultLayer::new(config)?, inner))
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Fault<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(config) = &self.config else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let mut rng = rand::rng();
        let delay = config.delay.filter(|(_, f)| f.sample(&mut rng));
        let abort = config
            .abort
            .filter(|(_, f)| f.sample(&mut rng))
            .map(|(status, _)| status);
        match (delay, abort) {
            (None, None) => ResponseFuture::inner(self.inner.call(req)),
            (None, Some(abort)) => ResponseFuture::abort(abort),
            (Some((delay, _)), abort) => {
                ResponseFuture::delayed(delay, self.inner.clone(), req, abort)
            }
        }
    }
}
