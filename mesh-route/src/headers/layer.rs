use std::sync::Arc;

use tower::Layer;

use super::HeaderOps;
use crate::config::Headers;

/// Applies [`HeaderOps`] to a service: request and response header operations.
#[derive(Clone, Debug)]
pub struct HeaderOpsLayer {
    pub(crate) headers: Option<Arc<Headers>>,
}

impl HeaderOpsLayer {
    /// The layer applying `headers`.
    pub fn new(headers: Headers) -> Self {
        HeaderOpsLayer {
            headers: (!headers.is_empty()).then(|| Arc::new(headers)),
        }
    }
}

impl<S> Layer<S> for HeaderOpsLayer {
    type Service = HeaderOps<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderOps {
            inner,
            headers: self.headers.clone(),
        }
    }
}
