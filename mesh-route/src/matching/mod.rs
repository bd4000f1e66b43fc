//! Request matching with Istio's `HTTPMatchRequest` semantics.
//!
//! A [`RouteMatcher`] is the compiled `match` list of one route: the blocks are
//! ORed, the conditions inside a block ANDed, and an empty list matches every
//! request. Compilation checks every regex once (anchored, so a regex must
//! match the whole value, and size-limited; Rust's `regex` runs in linear time
//! like RE2, so a tenant's pattern cannot blow up matching time).
//!
//! Paths are compared **as received** — the raw `:path` without its query
//! string: `%2e`, `..` and `//` are not decoded or resolved, so
//! `/public/../admin` is matched (and forwarded) as a path under `/public`,
//! never as `/admin`. Normalise before routing if the upstream normalises.
//!
//! ```
//! use mesh_route::{HttpMatch, RouteMatcher, StringMatch};
//!
//! let m = RouteMatcher::new(&[
//!     HttpMatch::default().with_uri(StringMatch::exact("/productpage")),
//!     HttpMatch::default().with_uri(StringMatch::prefix("/static")),
//! ])?;
//! let req = |path: &str| http::Request::get(path).body(()).unwrap();
//! assert_eq!(m.find(&req("/static/css/x.css")), Some(1));
//! assert_eq!(m.find(&req("/productpage?u=normal")), Some(0));
//! assert_eq!(m.find(&req("/productpage/x")), None);
//! # Ok::<(), mesh_route::ConfigError>(())
//! ```

mod request;
mod string;

pub use self::request::RouteMatcher;
pub(crate) use self::request::View;
pub(crate) use self::string::CompiledString;

#[cfg(test)]
mod tests;
