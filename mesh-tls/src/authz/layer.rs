use std::sync::Arc;

use tower::Layer;

use super::{AuthorizationPolicy, Authorizer, service::Authorization};

/// Applies Istio authorization policies to requests; see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct AuthorizationLayer {
    authorizer: Arc<Authorizer>,
}

impl AuthorizationLayer {
    /// A layer enforcing `policies`.
    pub fn new(policies: impl IntoIterator<Item = AuthorizationPolicy>) -> Self {
        AuthorizationLayer::from_authorizer(Arc::new(Authorizer::new(policies)))
    }

    /// A layer sharing an already compiled [`Authorizer`] (swap the layer's
    /// services to change policies).
    pub fn from_authorizer(authorizer: Arc<Authorizer>) -> Self {
        AuthorizationLayer { authorizer }
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Authorization<S> {
        Authorization::new(inner, self.authorizer.clone())
    }
}
