//! Endpoints: an address with the labels, weight and locality that balancing
//! and subset selection read.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Labels of an endpoint (`version: v2`), as in a `ServiceEntry` or a pod.
pub type Labels = BTreeMap<String, String>;

/// Where an endpoint runs: region, zone and sub-zone, any of them empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// The region, such as `us-east1`.
    pub region: String,
    /// The zone within the region.
    pub zone: String,
    /// The sub-zone within the zone.
    pub sub_zone: String,
}

impl Locality {
    /// Parses Istio's `region/zone/sub_zone` form; missing parts are empty.
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/').map(str::to_owned);
        Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            sub_zone: parts.next().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.sub_zone)
    }
}

/// One endpoint of a service: where to send requests, plus its metadata.
///
/// Cloning is cheap (the metadata is shared). Equality compares everything, so
/// a discovery update that changes an endpoint's weight or labels is a change.
///
/// ```
/// use mesh_core::Endpoint;
///
/// let ep = Endpoint::new("127.0.0.1:8080".parse().unwrap())
///     .with_label("version", "v2")
///     .with_weight(3);
/// assert_eq!(ep.weight().get(), 3);
/// assert_eq!(ep.labels()["version"], "v2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    addr: SocketAddr,
    weight: NonZeroU32,
    meta: Arc<Meta>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Meta {
    labels: Labels,
    locality: Locality,
}

impl Endpoint {
    /// An endpoint at `addr` with weight 1, no labels and no locality.
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            weight: NonZeroU32::MIN,
            meta: Arc::default(),
        }
    }

    /// The address requests go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The balancing weight (≥ 1).
    pub fn weight(&self) -> NonZeroU32 {
        self.weight
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.meta.labels
    }

    /// The locality.
    pub fn locality(&self) -> &Locality {
        &self.meta.locality
    }

    /// Sets the weight; 0 is taken as 1, the weight Envoy gives an endpoint
    /// without one.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.meta)
            .labels
            .insert(key.into(), value.into());
        self
    }

    /// Replaces the labels.
    #[must_use]
    pub fn with_labels(mut self, labels: Labels) -> Self {
        Arc::make_mut(&mut self.meta).labels = labels;
        self
    }

    /// Sets the locality.
    #[must_use]
    pub fn with_locality(mut self, locality: Locality) -> Self {
        Arc::make_mut(&mut self.meta).locality = locality;
        self
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Endpoint");
        d.field("addr", &self.addr).field("weight", &self.weight);
        if !self.meta.labels.is_empty() {
            d.field("labels", &self.meta.labels);
        }
        if self.meta.locality != Locality::default() {
            d.field("locality", &self.meta.locality);
        }
        d.finish()
    }
}

/// Selects endpoints by labels: a DestinationRule subset. An endpoint matches
/// when it has every label of the selector with the same value; the empty
/// selector matches everything.
///
/// ```
/// use mesh_core::{Endpoint, LabelSelector};
///
/// let v2 = LabelSelector::new([("version", "v2")]);
/// let ep = Endpoint::new("127.0.0.1:1".parse().unwrap()).with_label("version", "v2").with_label("app", "reviews");
/// assert!(v2.matches(&ep));
/// assert!(!LabelSelector::new([("version", "v1")]).matches(&ep));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    labels: Arc<Labels>,
}

impl LabelSelector {
    /// A selector requiring these labels.
    pub fn new<K: Into<String>, V: Into<String>>(labels: impl IntoIterator<Item = (K, V)>) -> Self {
        LabelSelector {
            labels: Arc::new(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The required labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether `endpoint` carries every required label.
    pub fn matches(&self, endpoint: &Endpoint) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| endpoint.labels().get(k) == Some(v))
    }
}

impl From<Labels> for LabelSelector {
    fn from(labels: Labels) -> Self {
        LabelSelector {
            labels: Arc::new(labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn builders_do_not_affect_clones() {
        let a = Endpoint::new(addr(1)).with_label("version", "v1");
        let b = a.clone().with_label("version", "v2");
        assert_eq!(a.labels()["version"], "v1");
        assert_eq!(b.labels()["version"], "v2");
        assert_ne!(a, b);
    }

    #[test]
    fn zero_weight_is_one() {
        assert_eq!(Endpoint::new(addr(1)).with_weight(0).weight().get(), 1);
        assert_eq!(Endpoint::new(addr(1)).weight().get(), 1);
    }

    #[test]
    fn locality_parses_istio_form() {
        let l = Locality::parse("us-east1/us-east1-b");
        assert_eq!(l.region, "us-east1");
        assert_eq!(l.zone, "us-east1-b");
        assert_eq!(l.sub_zone, "");
        assert_eq!(l.to_string(), "us-east1/us-east1-b/");
    }

    #[test]
    fn empty_selector_matches_all() {
        let ep = Endpoint::new(addr(1));
        assert!(LabelSelector::default().matches(&ep));
        assert!(!LabelSelector::new([("a", "b")]).matches(&ep));
    }
}
