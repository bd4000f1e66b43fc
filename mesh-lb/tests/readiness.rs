//! The balancer's contract with tower: readiness, fail-fast, load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use mesh_core::discover::{DiscoverExt, EndpointSet};
use mesh_core::{BoxError, Endpoint, MeshError, ResponseFlag};
use mesh_lb::{Balance, LoadBalancer};
use tower::{Service, ServiceExt};
use tower_test::mock;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

type Mock = mock::Mock<Request<()>, Response<u16>>;
type Handle = mock::Handle<Request<()>, Response<u16>>;

#[tokio::test]
async fn never_calls_an_endpoint_that_is_not_ready() {
    let (a, mut ha): (Mock, Handle) = mock::pair();
    let (b, mut hb): (Mock, Handle) = mock::pair();
    ha.allow(0);
    hb.allow(100);
    let mut services = vec![(addr(1), a), (addr(2), b)]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>();
    let set = EndpointSet::from_endpoints([Endpoint::new(addr(1)), Endpoint::new(addr(2))]);
    let discover = set
        .discover()
        .with_services(move |ep: &Endpoint| services.remove(&ep.addr()).unwrap());
    let mut lb = Balance::new(discover, LoadBalancer::RoundRobin).unwrap();

    for _ in 0..10 {
        let fut = lb.ready().await.unwrap().call(Request::new(()));
        // The mock panics if called unready; every request must reach `b`.
        let (_req, send) = hb.next_request().await.unwrap();
        send.send_response(Response::new(2));
        assert_eq!(*fut.await.unwrap().body(), 2);
    }
    assert!(ha.next_request().now_or_never().is_none());
}

#[tokio::test]
async fn all_busy_is_backpressure_and_no_endpoint_is_a_fast_503_uh() {
    let (a, mut ha): (Mock, Handle) = mock::pair();
    ha.allow(0);
    let mut svc = Some(a);
    let set = EndpointSet::from_endpoints([Endpoint::new(addr(1))]);
    let discover = set
        .discover()
        .with_services(move |_: &Endpoint| svc.take().unwrap());
    let mut lb = Balance::new(discover, LoadBalancer::least_request()).unwrap();
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        Service::<Request<()>>::poll_ready(&mut lb, &mut cx).is_pending(),
        "busy endpoints: wait"
    );

    set.remove(addr(1));
    poll_fn(|cx| Service::<Request<()>>::poll_ready(&mut lb, cx))
        .await
        .unwrap();
    let err: BoxError = lb.call(Request::new(())).await.unwrap_err();
    let mesh = MeshError::find(&*err).expect("a mesh error");
    assert!(matches!(mesh, MeshError::NoHealthyEndpoint));
    assert_eq!(mesh.flag(), ResponseFlag::NoHealthyUpstream);
    assert_eq!(mesh.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn least_request_sends_less_to_an_endpoint_that_holds_requests_longer() {
    let set = EndpointSet::from_endpoints((1..=3).map(|p| Endpoint::new(addr(p))));
    let discover = set.discover().with_services(|ep: &Endpoint| {
        let port = ep.addr().port();
        // Endpoint 1 takes 50 ms per request, the others 1 ms.
        let delay = Duration::from_millis(if port == 1 { 50 } else { 1 });
        tower::service_fn(move |_: Request<()>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(Response::new(port))
        })
    });
    let mut lb = Balance::new(discover, LoadBalancer::least_request()).unwrap();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut counts = [0usize; 4];
    for _ in 0..600 {
        let fut = lb.ready().await.unwrap().call(Request::new(()));
        in_flight.push(fut);
        tokio::time::sleep(Duration::from_micros(500)).await;
        while let Some(Some(res)) = futures_util::StreamExt::next(&mut in_flight).now_or_never() {
            counts[*res.unwrap().body() as usize] += 1;
        }
    }
    while let Some(res) = futures_util::StreamExt::next(&mut in_flight).await {
        counts[*res.unwrap().body() as usize] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), 600);
    // The slow endpoint holds ~100 requests at this rate while the others hold
    // one or two: two random choices almost never favour it.
    assert!(counts[1] * 5 < counts[2].min(counts[3]), "{counts:?}");

    // Round robin, for contrast, ignores load.
    let set = EndpointSet::from_endpoints((1..=3).map(|p| Endpoint::new(addr(p))));
    let discover = set.discover().with_services(|ep: &Endpoint| {
        let port = ep.addr().port();
        tower::service_fn(move |_: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(port))
        })
    });
    let mut rr = Balance::new(discover, LoadBalancer::RoundRobin).unwrap();
    let mut rr_counts = [0usize; 4];
    for _ in 0..30 {
        rr_counts[*rr
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap()
            .body() as usize] += 1;
    }
    assert_eq!(rr_counts, [0, 10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_avoids_the_slow_endpoint() {
    let set = EndpointSet::from_endpoints((1..=2).map(|p| Endpoint::new(addr(p))));
    let discover = set.discover().with_services(|ep: &Endpoint| {
        let port = ep.addr().port();
        let delay = Duration::from_millis(if port == 1 { 200 } else { 5 });
        tower::service_fn(move |_: Request<()>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(Response::new(port))
        })
    });
    let mut lb = Balance::new(discover, LoadBalancer::peak_ewma()).unwrap();
    let mut counts = [0usize; 3];
    // One request at a time: in-flight counts are equal (zero), only latency differs.
    for _ in 0..100 {
        let res = lb
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        counts[*res.body() as usize] += 1;
    }
    assert!(counts[1] <= 5, "{counts:?}");
}

#[tokio::test]
async fn chosen_endpoint_and_generated_cookie_reach_the_response() {
    let set = EndpointSet::from_endpoints((1..=3).map(|p| Endpoint::new(addr(p))));
    let discover = set.discover().with_services(|ep: &Endpoint| {
        let port = ep.addr().port();
        tower::service_fn(move |req: Request<()>| async move {
            let ctx = mesh_core::context::RequestContext::get(req.extensions());
            if req.headers().contains_key("x-with-context") {
                // The endpoint's client sees the choice in the context too.
                assert_eq!(ctx.unwrap().endpoint.unwrap().0.port(), port);
            } else {
                // The balancer makes no context for it.
                assert!(ctx.is_none());
            }
            Ok::<_, std::convert::Infallible>(Response::new(port))
        })
    });
    let key = mesh_lb::HashKey::cookie("lb", Some("/".into()), Some(Duration::from_secs(60)));
    let mut lb = Balance::new(discover, LoadBalancer::ring_hash(key)).unwrap();
    let res = lb
        .ready()
        .await
        .unwrap()
        .call({
            let mut req = Request::builder()
                .header("x-with-context", "1")
                .body(())
                .unwrap();
            req.extensions_mut()
                .insert(mesh_core::context::RequestContext::default());
            req
        })
        .await
        .unwrap();
    let chosen = res
        .extensions()
        .get::<mesh_core::context::ChosenEndpoint>()
        .unwrap()
        .0;
    assert_eq!(chosen.port(), *res.body());
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    // Sending the cookie back sticks to the same endpoint, every time.
    for _ in 0..20 {
        let req = Request::builder().header("cookie", &pair).body(()).unwrap();
        let res = lb.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(*res.body(), chosen.port());
        assert!(res.headers().get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn an_endpoint_error_names_the_endpoint() {
    let set = EndpointSet::from_endpoints([Endpoint::new(addr(7))]);
    let discover = set.discover().with_services(|_: &Endpoint| {
        tower::service_fn(|_: Request<()>| async {
            Err::<Response<u16>, _>(MeshError::ConnectFailure(
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
            ))
        })
    });
    let mut lb = Balance::new(discover, LoadBalancer::RoundRobin).unwrap();
    let err = lb
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap_err();
    let named = mesh_core::context::EndpointError::find(&*err).expect("the endpoint is named");
    assert_eq!(named.addr(), addr(7));
    assert!(
        matches!(MeshError::find(&*err), Some(MeshError::ConnectFailure(_))),
        "the cause is kept"
    );
}
