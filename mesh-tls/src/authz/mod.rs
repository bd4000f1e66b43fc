//! Authorization: a subset of Istio's `AuthorizationPolicy` as a tower layer.
//!
//! Policies are [`AuthorizationPolicy`] values with an [`Action`] (ALLOW or
//! DENY) and [`Rule`]s on `from.source.principals` / `notPrincipals` and
//! `to.operation.paths` / `notPaths` / `methods` / `notMethods` (`when`
//! conditions, hosts, ports, namespaces and IP blocks are not implemented).
//! Evaluation follows Istio: any matching DENY policy denies; otherwise, if
//! no ALLOW policy exists the request is allowed; otherwise it is allowed only
//! if an ALLOW policy matches. Values match exactly, or with `*` as prefix
//! (`/api/*`), suffix (`*/sa/web`) or presence (`*`) wildcard.
//!
//! The principal is the [`PeerIdentity`](mesh_core::context::PeerIdentity)
//! the mTLS acceptor put in the request, without `spiffe://`; a plaintext
//! request has none. A denial is answered here, never reaching the inner
//! service: `403` with body `RBAC: access denied`, as Envoy's RBAC filter;
//! the [`Decision`] is in the response extensions.
//!
//! Unlike tower's `filter`, which fails the call with an error, the denial is
//! a response, so the layer keeps the inner error type.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use mesh_core::context::PeerIdentity;
//! use mesh_tls::authz::{Action, AuthorizationLayer, AuthorizationPolicy, Rule, Source};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let only_web = AuthorizationPolicy {
//!     name: "only-web".into(),
//!     action: Action::Allow,
//!     rules: vec![Rule {
//!         from: vec![Source { principals: vec!["cluster.local/ns/default/sa/web".into()], ..Default::default() }],
//!         to: vec![],
//!     }],
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(AuthorizationLayer::new([only_web]))
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     });
//!
//! let mut req = Request::new(Full::default());
//! req.extensions_mut().insert(PeerIdentity("spiffe://cluster.local/ns/default/sa/web".into()));
//! let res = svc.clone().oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//!
//! let mut req = Request::new(Full::default());
//! req.extensions_mut().insert(PeerIdentity("spiffe://cluster.local/ns/default/sa/db".into()));
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 403);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "RBAC: access denied");
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod layer;
mod policy;
mod service;

pub use self::body::ResponseBody;
pub use self::future::ResponseFuture;
pub use self::layer::AuthorizationLayer;
pub use self::policy::{
    Action, AuthorizationPolicy, Authorizer, Decision, Operation, RequestAttributes, Rule, Source,
};
pub use self::service::{Authorization, DENIED_BODY};

#[cfg(test)]
mod tests;
