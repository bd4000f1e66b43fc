//! Header operations (Istio's `headers.request` / `headers.response` with
//! `set`, `add`, `remove`) as a tower layer.
//!
//! Request operations run before the request goes on; response operations run
//! on the response before it is returned. Order follows Envoy: `remove`, then
//! `set`, then `add`. Setting `host` also sets the URI's authority when the
//! request carries one (HTTP/2 `:authority`), so both stay equal. The same
//! operations, given per destination, are applied by [`Split`](crate::Split)
//! only to the destination it picks.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use http::{HeaderName, HeaderValue, Request, Response};
//! use mesh_route::headers::HeaderOpsLayer;
//! use mesh_route::{HeaderOperations, Headers};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let headers = Headers {
//!     request: HeaderOperations {
//!         set: vec![(HeaderName::from_static("x-route"), HeaderValue::from_static("reviews"))],
//!         ..Default::default()
//!     },
//!     response: HeaderOperations {
//!         remove: vec![HeaderName::from_static("server")],
//!         ..Default::default()
//!     },
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(HeaderOpsLayer::new(headers))
//!     .service_fn(|req: Request<()>| async move {
//!         assert_eq!(req.headers()["x-route"], "reviews");
//!         Ok::<_, std::convert::Infallible>(
//!             Response::builder().header("server", "envoy").body(()).unwrap(),
//!         )
//!     });
//! let res = svc.oneshot(Request::new(())).await.unwrap();
//! assert!(res.headers().get("server").is_none());
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::HeaderOpsLayer;
pub use self::service::HeaderOps;

use http::header::HOST;
use http::{HeaderMap, Request};

use crate::config::HeaderOperations;
use crate::util::set_authority;

/// Applies `ops` to a request.
pub(crate) fn apply_to_request<B>(ops: &HeaderOperations, req: &mut Request<B>) {
    for name in &ops.remove {
        req.headers_mut().remove(name);
    }
    for (name, value) in &ops.set {
        if name == HOST
            && let Ok(v) = value.to_str()
            && set_authority(req, v)
        {
            continue;
        }
        req.headers_mut().insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        req.headers_mut().append(name.clone(), value.clone());
    }
}

/// Applies `ops` to response headers.
pub(crate) fn apply_to_headers(ops: &HeaderOperations, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        headers.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests;
