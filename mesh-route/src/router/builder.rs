use std::fmt;
use std::time::Duration;

use mesh_core::BoxError;
use mesh_core::limit::SharedLimit;
use tower::Layer;

use super::{Forward, RouteStack, Router};
use crate::config::{
    ConfigError, ConfigErrorKind, Destination, RouteAction, RouteConfig, StringMatch,
};
use crate::fault::FaultLayer;
use crate::headers::HeaderOpsLayer;
use crate::matching::RouteMatcher;
use crate::mirror::layer::Settings;
use crate::mirror::{MirrorLayer, MirrorStats};
use crate::rewrite::{RedirectService, RewriteLayer};
use crate::split::Split;
use crate::util::Fraction;

/// Which use a destination's service is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A destination of the route's weighted split.
    Primary,
    /// A mirror target (its responses are dropped; do not retry it).
    Mirror,
}

/// What the builder asks a service for: a destination, the route it serves
/// and in which role. The proxy answers with its service for
/// `(destination.host, destination.subset)` — typically a clone of a shared
/// cluster stack — wrapped in the route's retry policy for
/// [`Role::Primary`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Target<'a> {
    /// The route (its `retries`, `timeout`… live in the proxy's own config,
    /// found by [`RouteConfig::name`]).
    pub route: &'a RouteConfig,
    /// The destination.
    pub destination: &'a Destination,
    /// Primary or mirror.
    pub role: Role,
}

/// Builds a [`Router`] from Istio routes. See the [module docs](crate::router).
pub struct RouterBuilder {
    routes: Vec<RouteConfig>,
    mirror: Settings,
}

impl fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("routes", &self.routes.len())
            .field("mirror", &self.mirror)
            .finish()
    }
}

impl Router<()> {
    /// A builder of the router of these routes (in order; the first match
    /// wins).
    pub fn builder(routes: Vec<RouteConfig>) -> RouterBuilder {
        RouterBuilder {
            routes,
            mirror: Settings::default(),
        }
    }
}

impl RouterBuilder {
    /// Bounds the mirror copies in flight across all routes (1024 by default).
    #[must_use]
    pub fn mirror_limit(mut self, limit: SharedLimit) -> Self {
        self.mirror.limit = limit;
        self
    }

    /// Counts mirror copies of all routes into `stats`.
    #[must_use]
    pub fn mirror_stats(mut self, stats: MirrorStats) -> Self {
        self.mirror.stats = stats;
        self
    }

    /// Mirrors bodies up to `cap` bytes (64 KiB by default).
    #[must_use]
    pub fn mirror_body_cap(mut self, cap: usize) -> Self {
        self.mirror.cap = cap;
        self
    }

    /// The deadline of each mirror copy (15 s by default).
    #[must_use]
    pub fn mirror_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.mirror.timeout = timeout;
        self
    }

    /// Whether mirror copies get `-shadow` appended to their authority
    /// (default true; Istio 1.28+ turns it off).
    #[must_use]
    pub fn shadow_host_suffix(mut self, append: bool) -> Self {
        self.mirror.suffix = append;
        self
    }

    /// Builds the router; `make` gives the service of each destination.
    pub fn build<D, MK>(self, make: MK) -> Result<Router<RouteStack<Forward<D>, D>>, ConfigError>
    where
        MK: FnMut(Target<'_>) -> Result<D, BoxError>,
        D: Clone,
    {
        self.build_with(make, |_, forward| forward)
    }

    /// Builds the router; `make` gives the service of each destination and
    /// `wrap` wraps each route's [`Forward`] in that route's own policies
    /// (e.g. the route `timeout`, from another crate), once per route.
    pub fn build_with<D, R, MK, W>(
        self,
        mut make: MK,
        mut wrap: W,
    ) -> Result<Router<RouteStack<R, D>>, ConfigError>
    where
        MK: FnMut(Target<'_>) -> Result<D, BoxError>,
        W: FnMut(&RouteConfig, Forward<D>) -> R,
        D: Clone,
        R: Clone,
    {
        let mut entries = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let name = if route.name.is_empty() {
                format!("route-{i}")
            } else {
                route.name.clone()
            };
            let in_route = |e: ConfigError| e.in_route(&name);
            let mut make_for = |destination: &Destination, role| {
                make(Target {
                    route,
                    destination,
                    role,
                })
                .map_err(|source| {
                    ConfigError::from(ConfigErrorKind::Destination {
                        destination: destination.clone(),
                        source,
                    })
                    .in_route(&name)
                })
            };

            let forward = match &route.action {
                RouteAction::Forward(dests) if dests.len() == 1 && dests[0].headers.is_empty() => {
                    Forward::single(make_for(&dests[0].destination, Role::Primary)?)
                }
                RouteAction::Forward(dests) => {
                    let mut arms = Vec::with_capacity(dests.len());
                    for d in dests {
                        let svc = make_for(&d.destination, Role::Primary)?;
                        arms.push((svc, d.weight, d.headers.clone()));
                    }
                    Forward::split(Split::with_headers(arms).map_err(in_route)?)
                }
                RouteAction::Redirect(r) => {
                    if route.rewrite.is_some() {
                        return Err(in_route(ConfigErrorKind::RewriteWithRedirect.into()));
                    }
                    Forward::redirect(RedirectService::<()>::new(r.clone()).map_err(in_route)?)
                }
            };

            let mut mirror = MirrorLayer::new().with_settings(self.mirror.clone());
            for m in &route.mirrors {
                let fraction = match m.percentage {
                    Some(p) => Fraction::from_percent(p, "mirror").map_err(in_route)?,
                    None => Fraction::ALL,
                };
                if fraction.is_zero() {
                    continue; // explicit 0: Istio emits no mirror policy
                }
                let svc = make_for(&m.destination, Role::Mirror)?;
                mirror = mirror.with_checked_target(svc, fraction);
            }

            let fault = match &route.fault {
                Some(f) => FaultLayer::new(*f).map_err(in_route)?,
                None => FaultLayer::none(),
            };
            let headers = HeaderOpsLayer::new(route.headers.clone());
            let rewrite = match &route.rewrite {
                Some(r) => RewriteLayer::new(r.clone()).map_err(in_route)?,
                None => RewriteLayer::none(),
            };

            let forward = wrap(route, forward);
            // A route configuring none of the layers calls its service
            // directly (see `RouteStack`).
            let direct = fault.config.is_none()
                && headers.headers.is_none()
                && rewrite.config.is_none()
                && mirror.targets.is_empty();
            let mirrored = (!direct).then(|| mirror.layer(forward.clone()));
            let stack = |rewrite: RewriteLayer| match &mirrored {
                Some(m) => {
                    RouteStack::layered(fault.layer(headers.layer(rewrite.layer(m.clone()))))
                }
                None => RouteStack::direct(forward.clone()),
            };

            if route.matches.is_empty() {
                entries.push((name.clone(), RouteMatcher::any(), stack(rewrite)));
                continue;
            }
            // One entry per match block, as Istio emits one Envoy route per
            // match: each knows its own prefix (for the rewrite) and name.
            for block in &route.matches {
                let matcher = RouteMatcher::new(std::slice::from_ref(block)).map_err(in_route)?;
                let rewrite = match &block.uri {
                    Some(StringMatch::Prefix(p)) => rewrite.clone().matched_prefix(p.clone()),
                    _ => rewrite.clone(),
                };
                let entry_name = if block.name.is_empty() {
                    name.clone()
                } else {
                    format!("{name}.{}", block.name)
                };
                entries.push((entry_name, matcher, stack(rewrite)));
            }
        }
        Ok(Router::new(entries))
    }
}
