//! Layers for the endpoint gate and the cluster guard.

use std::net::SocketAddr;

use mesh_core::classify::HttpClassifier;
use tower::Layer;

use super::detector::OutlierDetector;
use super::service::{ClusterHealth, OutlierGate};

/// Wraps the service of the endpoint at `addr` in an [`OutlierGate`].
///
/// One layer per endpoint: the address keys the endpoint's outlier state in
/// the cluster's [`OutlierDetector`].
#[derive(Clone, Debug)]
pub struct OutlierGateLayer<C = HttpClassifier> {
    detector: OutlierDetector,
    addr: SocketAddr,
    classifier: C,
}

impl OutlierGateLayer {
    /// Gates for the endpoint at `addr`, classifying with [`HttpClassifier`].
    pub fn new(detector: OutlierDetector, addr: SocketAddr) -> Self {
        OutlierGateLayer {
            detector,
            addr,
            classifier: HttpClassifier,
        }
    }
}

impl<C> OutlierGateLayer<C> {
    /// Classifies outcomes with `classifier` instead (say a
    /// [`GrpcClassifier`](mesh_core::classify::GrpcClassifier)).
    pub fn with_classifier<C2>(self, classifier: C2) -> OutlierGateLayer<C2> {
        OutlierGateLayer {
            detector: self.detector,
            addr: self.addr,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for OutlierGateLayer<C> {
    type Service = OutlierGate<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        OutlierGate::new(inner, &self.detector, self.addr, self.classifier.clone())
    }
}

/// Wraps a balancer in a [`ClusterHealth`] guard (503 `UH` when every endpoint
/// is ejected and panic mode does not apply).
#[derive(Clone, Debug)]
pub struct ClusterHealthLayer {
    detector: OutlierDetector,
}

impl ClusterHealthLayer {
    /// Guards balancers over the endpoints `detector` watches.
    pub fn new(detector: OutlierDetector) -> Self {
        ClusterHealthLayer { detector }
    }
}

impl<S> Layer<S> for ClusterHealthLayer {
    type Service = ClusterHealth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClusterHealth::new(inner, &self.detector)
    }
}

impl OutlierDetector {
    /// Wraps the service of the endpoint at `addr` in its gate.
    pub fn gate<S>(&self, addr: SocketAddr, inner: S) -> OutlierGate<S> {
        OutlierGate::new(inner, self, addr, HttpClassifier)
    }

    /// Wraps the service of the endpoint at `addr` in its gate, classifying
    /// with `classifier`.
    pub fn gate_with<S, C>(&self, addr: SocketAddr, inner: S, classifier: C) -> OutlierGate<S, C> {
        OutlierGate::new(inner, self, addr, classifier)
    }

    /// A layer making gates for the endpoint at `addr`.
    pub fn gate_layer(&self, addr: SocketAddr) -> OutlierGateLayer {
        OutlierGateLayer::new(self.clone(), addr)
    }

    /// The layer to put above the balancer (503 `UH` when all are ejected).
    pub fn cluster_layer(&self) -> ClusterHealthLayer {
        ClusterHealthLayer::new(self.clone())
    }
}
