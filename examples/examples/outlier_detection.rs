//! Outlier detection in a proxyless client: three endpoints of a service, one
//! answering 503. Each endpoint's service sits behind its `OutlierGate`; a
//! small round robin balances over the ready ones; the `ClusterHealth` guard
//! and the pool limits sit above it. After five 503s the bad endpoint is
//! ejected, the client sees only 200s, and the sweep after the ejection time
//! returns it.
//!
//! Run with `cargo run -p examples --example outlier_detection`.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use mesh_breaker::outlier::{OutlierDetection, OutlierDetector};
use mesh_breaker::pool::{ConnectionPoolLayer, PoolLimits};
use mesh_core::BoxError;
use tower::{Service, ServiceBuilder, ServiceExt};

/// An in-process endpoint answering with `status`.
fn endpoint(
    addr: SocketAddr,
    status: u16,
) -> impl Service<Request<()>, Response = Response<String>, Error = BoxError> + Clone {
    tower::service_fn(move |_: Request<()>| async move {
        let mut res = Response::new(format!("{addr}"));
        *res.status_mut() = http::StatusCode::from_u16(status)?;
        Ok::<_, BoxError>(res)
    })
}

/// A minimal round robin: calls only endpoints that are ready.
struct RoundRobin<S> {
    endpoints: Vec<S>,
    next: usize,
    chosen: Option<usize>,
}

impl<S: Service<R, Error = BoxError>, R> Service<R> for RoundRobin<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            if self.endpoints[idx].poll_ready(cx)?.is_ready() {
                self.chosen = Some(idx);
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    }

    fn call(&mut self, req: R) -> S::Future {
        let idx = self
            .chosen
            .take()
            .unwrap_or(self.next % self.endpoints.len());
        self.next = idx + 1;
        self.endpoints[idx].call(req)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let detector = OutlierDetector::new(OutlierDetection {
        max_ejection_percent: 50, // at Istio's 10 %, 3 endpoints eject nothing
        interval: Duration::from_millis(500),
        base_ejection_time: Duration::from_secs(1),
        ..OutlierDetection::default()
    });
    let pool = ConnectionPoolLayer::new(PoolLimits::envoy());
    let addrs: Vec<SocketAddr> = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let statuses = [200, 503, 200];
    let balancer = RoundRobin {
        endpoints: addrs
            .iter()
            .zip(statuses)
            .map(|(a, s)| detector.gate(*a, endpoint(*a, s)))
            .collect(),
        next: 0,
        chosen: None,
    };
    let mut client = ServiceBuilder::new()
        .layer(pool.clone())
        .layer(detector.cluster_layer())
        .service(balancer);

    let mut line = String::new();
    for _ in 0..30 {
        poll_fn(|cx| client.poll_ready(cx)).await?;
        let res = client.call(Request::new(())).await?;
        line.push_str(&format!("{} ", res.status().as_u16()));
    }
    println!("30 requests: {line}");
    for e in detector.endpoints() {
        println!(
            "  {}: ejected={} ejections={} time={:?}",
            e.addr, e.ejected, e.ejections_total, e.ejection_time
        );
    }
    println!("stats: {:?}", detector.stats());

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let back = detector.endpoints().iter().all(|e| !e.ejected);
    println!("after the ejection time and a sweep, all back in service: {back}");
    let res = client.ready().await?.call(Request::new(())).await?;
    println!(
        "next request: {} from {}",
        res.status(),
        res.body().get_ref()
    );
    println!("pool: {:?}", pool.stats());
    Ok(())
}
