use std::sync::Arc;

use http::uri::{Authority, PathAndQuery};
use tower::Layer;

use super::RewriteUri;
use crate::config::{ConfigError, ConfigErrorKind, Rewrite};

#[derive(Clone, Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) prefix: Option<Box<str>>,
    pub(crate) uri: Option<Box<str>>,
    pub(crate) authority: Option<Box<str>>,
}

/// Applies [`RewriteUri`] to a service. See the [module docs](crate::rewrite).
#[derive(Clone, Debug)]
pub struct RewriteLayer {
    pub(crate) config: Option<Arc<Compiled>>,
}

impl RewriteLayer {
    /// The layer applying `rewrite`; the URI is replaced whole until
    /// [`matched_prefix`](Self::matched_prefix) says which prefix matched.
    pub fn new(rewrite: Rewrite) -> Result<Self, ConfigError> {
        if let Some(uri) = &rewrite.uri
            && PathAndQuery::try_from(uri.as_str()).is_err()
        {
            return Err(ConfigErrorKind::InvalidUri {
                field: "rewrite.uri",
                value: uri.clone(),
            }
            .into());
        }
        if let Some(authority) = &rewrite.authority
            && Authority::try_from(authority.as_str()).is_err()
        {
            return Err(ConfigErrorKind::InvalidUri {
                field: "rewrite.authority",
                value: authority.clone(),
            }
            .into());
        }
        if rewrite.uri.is_none() && rewrite.authority.is_none() {
            return Ok(Self::none());
        }
        Ok(RewriteLayer {
            config: Some(Arc::new(Compiled {
                prefix: None,
                uri: rewrite.uri.map(Into::into),
                authority: rewrite.authority.map(Into::into),
            })),
        })
    }

    /// A layer changing nothing.
    pub fn none() -> Self {
        RewriteLayer { config: None }
    }

    /// The route matched by this `uri.prefix`: `rewrite.uri` replaces that
    /// prefix only.
    #[must_use]
    pub fn matched_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(c) = &self.config {
            let mut c = Compiled::clone(c);
            c.prefix = Some(prefix.into().into());
            self.config = Some(Arc::new(c));
        }
        self
    }
}

impl<S> Layer<S> for RewriteLayer {
    type Service = RewriteUri<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RewriteUri {
            inner,
            config: self.config.clone(),
        }
    }
}
