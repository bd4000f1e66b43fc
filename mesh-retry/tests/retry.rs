//! The retry layer against scripted upstreams, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic on their own setup

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use mesh_core::context::{Attempt, ChosenEndpoint, RequestContext, TriedEndpoints};
use mesh_core::limit::SharedLimit;
use mesh_core::{BoxError, MeshError, Overload, ResponseFlag, ResponseFlags};
use mesh_retry::budget::{ConcurrencyBudget, tps_budget};
use mesh_retry::{Backoff, RetryBody, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// What the scripted upstream does on its n-th call (from 0).
#[derive(Clone, Copy, Debug)]
enum Act {
    Status(u16),
    Refused,
    Reset,
    RouteTimeout,
    Overflow,
    /// Never answers.
    Hang,
    /// Answers with the status after a delay.
    Delay(u64, u16),
}

#[derive(Debug)]
struct Seen {
    attempt_header: String,
    /// The attempt as the request context says (none: the first).
    attempt: u32,
    /// Whether the request carried a context at all.
    context: bool,
    tried: Vec<SocketAddr>,
    body: Result<Bytes, String>,
    at: Instant,
}

struct Upstream {
    script: Arc<dyn Fn(usize) -> Act + Send + Sync>,
    seen: Arc<Mutex<Vec<Seen>>>,
    dropped: Arc<AtomicUsize>,
    /// How many times this upstream (or a clone) was cloned.
    clones: Arc<AtomicUsize>,
}

impl Clone for Upstream {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Upstream {
            script: self.script.clone(),
            seen: self.seen.clone(),
            dropped: self.dropped.clone(),
            clones: self.clones.clone(),
        }
    }
}

fn endpoint(n: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n as u8 + 1], 80))
}

impl Upstream {
    fn new(script: impl Fn(usize) -> Act + Send + Sync + 'static) -> Self {
        Upstream {
            script: Arc::new(script),
            seen: Arc::default(),
            dropped: Arc::default(),
            clones: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }
}

/// Counts attempts dropped before they answered (cancelled).
struct DropGuard(Arc<AtomicUsize>, bool);
impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<B> Service<Request<RetryBody<B>>> for Upstream
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<String>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<String>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RetryBody<B>>) -> Self::Future {
        let seen = self.seen.clone();
        let script = self.script.clone();
        let dropped = self.dropped.clone();
        Box::pin(async move {
            let at = Instant::now();
            let attempt_header = req
                .headers()
                .get("x-envoy-attempt-count")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let attempt = RequestContext::attempt_of(req.extensions()).get();
            let context = RequestContext::get(req.extensions()).is_some();
            let tried = RequestContext::get(req.extensions())
                .map(|c| c.tried.as_slice().to_vec())
                .unwrap_or_default();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Seen {
                    attempt_header,
                    attempt,
                    context,
                    tried,
                    body: Err("not read yet".into()),
                    at,
                });
                seen.len() - 1
            };
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| e.to_string());
            seen.lock().unwrap()[n].body = body;
            let mut guard = DropGuard(dropped, false);
            let status = match script(n) {
                Act::Status(s) => s,
                Act::Refused => {
                    return Err(io::Error::from(io::ErrorKind::ConnectionRefused).into());
                }
                Act::Reset => return Err(io::Error::from(io::ErrorKind::ConnectionReset).into()),
                Act::RouteTimeout => {
                    return Err(MeshError::RequestTimeout(Duration::from_secs(1)).into());
                }
                Act::Overflow => return Err(MeshError::Overloaded(Overload::MaxRequests).into()),
                Act::Hang => std::future::pending().await,
                Act::Delay(ms, s) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    s
                }
            };
            guard.1 = true;
            let mut res = Response::builder()
                .status(status)
                .body(format!("try {}", n + 1))
                .unwrap();
            res.extensions_mut().insert(ChosenEndpoint(endpoint(n)));
            Ok(res)
        })
    }
}

fn policy(attempts: u32, retry_on: &str) -> RetryPolicy {
    RetryPolicy::new(attempts, retry_on.parse().unwrap())
}

fn get() -> Request<Full<Bytes>> {
    Request::new(Full::new(Bytes::from_static(b"hello")))
}

async fn send<B>(
    layer: &RetryLayer,
    upstream: &Upstream,
    req: Request<B>,
) -> Result<Response<String>, BoxError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    layer.layer(upstream.clone()).oneshot(req).await
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_attempt_count_and_replayed_body() {
    let up = Upstream::new(|n| Act::Status(if n < 2 { 503 } else { 200 }));
    let layer = RetryLayer::new(policy(3, "5xx"));
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "try 3");
    assert!(res.headers().get("x-mesh-response-flags").is_none());
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.attempt_header, (i + 1).to_string());
        assert_eq!(s.attempt, i as u32 + 1);
        // Retries carry their attempt in a context; the first needs none.
        assert_eq!(s.context, i > 0);
        assert_eq!(
            s.body.as_deref().unwrap(),
            b"hello",
            "attempt {i} got the whole body"
        );
    }
    assert_eq!(layer.stats().retries(), 2);
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_return_the_last_response_flagged_urx() {
    let up = Upstream::new(|_| Act::Status(503));
    let layer = RetryLayer::new(policy(2, "5xx"));
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(up.calls(), 3, "1 + attempts tries");
    assert_eq!(res.status(), 503);
    assert_eq!(res.body(), "try 3", "the last real response");
    assert_eq!(res.headers()["x-mesh-response-flags"], "URX");
    assert!(
        res.extensions()
            .get::<ResponseFlags>()
            .unwrap()
            .contains(ResponseFlag::UpstreamRetryLimitExceeded)
    );
    assert_eq!(layer.stats().limit_exceeded(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_fall_within_envoys_bounds() {
    let backoff = Backoff::default();
    let layer = RetryLayer::new(RetryPolicy {
        backoff,
        ..policy(5, "5xx")
    });
    let mut longest = Duration::ZERO;
    for _ in 0..40 {
        let up = Upstream::new(|_| Act::Status(503));
        send(&layer, &up, get()).await.unwrap();
        let seen = up.seen();
        assert_eq!(seen.len(), 6);
        for n in 1..seen.len() {
            let wait = seen[n].at - seen[n - 1].at;
            let bound = backoff.max().min(backoff.base() * 2u32.pow(n as u32));
            assert!(wait <= bound, "retry {n} waited {wait:?} > {bound:?}");
            // Envoy's tighter bound; tokio's timer fires on whole milliseconds.
            assert!(wait <= backoff.ceiling(n as u32).min(backoff.max()));
            longest = longest.max(wait);
        }
    }
    assert!(
        longest > Duration::from_millis(100),
        "the waits grow: {longest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_is_not_retried_under_connect_failure_but_a_refused_connection_is() {
    let layer = RetryLayer::new(policy(2, "connect-failure"));
    let up = Upstream::new(|_| Act::Status(503));
    assert_eq!(send(&layer, &up, get()).await.unwrap().status(), 503);
    assert_eq!(up.calls(), 1);

    let up = Upstream::new(|n| {
        if n == 0 {
            Act::Refused
        } else {
            Act::Status(200)
        }
    });
    assert_eq!(send(&layer, &up, get()).await.unwrap().status(), 200);
    assert_eq!(up.calls(), 2);

    let up = Upstream::new(|n| if n == 0 { Act::Reset } else { Act::Status(200) });
    assert!(
        send(&layer, &up, get()).await.is_err(),
        "a reset is not a connect failure"
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_is_retried_under_5xx_and_not_under_connect_failure() {
    let per_try = Duration::from_millis(100);
    let script = |n| if n == 0 { Act::Hang } else { Act::Status(200) };

    let layer = RetryLayer::new(RetryPolicy {
        per_try_timeout: Some(per_try),
        ..policy(2, "5xx")
    });
    let up = Upstream::new(script);
    let start = Instant::now();
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.calls(), 2);
    let retry_at = up.seen()[1].at - start;
    assert!(
        retry_at >= per_try && retry_at <= per_try + Backoff::DEFAULT_BASE,
        "{retry_at:?}"
    );
    assert_eq!(layer.stats().per_try_timeouts(), 1);

    let layer = RetryLayer::new(RetryPolicy {
        per_try_timeout: Some(per_try),
        ..policy(2, "connect-failure,refused-stream,unavailable")
    });
    let up = Upstream::new(script);
    let start = Instant::now();
    let err = send(&layer, &up, get()).await.unwrap_err();
    assert!(matches!(MeshError::find(&*err), Some(MeshError::PerTryTimeout(d)) if *d == per_try));
    assert_eq!(Instant::now() - start, per_try);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_retry_is_timed_from_its_own_start() {
    // The request's one timer moves to each new attempt's per-try deadline.
    let per_try = Duration::from_millis(100);
    let jitter = Duration::from_millis(1);
    let layer = RetryLayer::new(RetryPolicy {
        per_try_timeout: Some(per_try),
        timeout: Some(Duration::from_secs(1)),
        backoff: Backoff::with_max(jitter, jitter).unwrap(),
        ..policy(3, "5xx")
    });
    let up = Upstream::new(|n| if n < 3 { Act::Hang } else { Act::Status(200) });
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.calls(), 4);
    assert_eq!(layer.stats().per_try_timeouts(), 3);
    assert_eq!(layer.stats().request_timeouts(), 0);
    let seen = up.seen();
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= per_try && gap <= per_try + jitter, "{gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_fires_at_its_deadline_whatever_the_attempts_do() {
    let timeout = Duration::from_secs(1);
    type Case = (&'static str, RetryPolicy, fn(usize) -> Act);
    let cases: Vec<Case> = vec![
        ("hanging attempt", policy(3, "5xx"), |_| Act::Hang),
        (
            "in a long backoff",
            RetryPolicy {
                backoff: Backoff::with_max(Duration::from_secs(5), Duration::from_secs(5)).unwrap(),
                ..policy(3, "5xx")
            },
            |_| Act::Status(503),
        ),
        (
            "retrying per-try timeouts",
            RetryPolicy {
                per_try_timeout: Some(Duration::from_millis(300)),
                ..policy(10, "5xx")
            },
            |_| Act::Hang,
        ),
        ("slow answer", policy(3, "5xx"), |_| Act::Delay(1500, 200)),
    ];
    for (name, p, script) in cases {
        let layer = RetryLayer::new(RetryPolicy {
            timeout: Some(timeout),
            ..p
        });
        let up = Upstream::new(script);
        let start = Instant::now();
        let err = send(&layer, &up, get()).await.unwrap_err();
        assert_eq!(Instant::now() - start, timeout, "{name}");
        let mesh = MeshError::find(&*err).unwrap();
        assert!(
            matches!(mesh, MeshError::RequestTimeout(d) if *d == timeout),
            "{name}: {mesh}"
        );
        let res = mesh.to_response::<String>();
        assert_eq!(res.status(), 504);
        assert_eq!(res.headers()["x-mesh-response-flags"], "UT");
        assert_eq!(layer.stats().request_timeouts(), 1, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn route_timeout_expiry_and_pool_overflow_are_never_retried() {
    let everything = "5xx,gateway-error,reset,connect-failure,refused-stream,reset-before-request";
    for act in [Act::RouteTimeout, Act::Overflow] {
        let layer = RetryLayer::new(policy(3, everything));
        let up = Upstream::new(move |_| act);
        let err = send(&layer, &up, get()).await.unwrap_err();
        assert_eq!(up.calls(), 1, "{act:?}");
        assert!(
            MeshError::find(&*err).is_some(),
            "{act:?}: the error is passed on"
        );
        assert_eq!(layer.stats().retries(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn each_retry_names_the_endpoints_already_tried() {
    let up = Upstream::new(|n| Act::Status(if n < 2 { 502 } else { 200 }));
    let layer = RetryLayer::new(policy(3, "gateway-error"));
    let mut req = get();
    let outer = SocketAddr::from(([192, 168, 0, 1], 80));
    let mut already = TriedEndpoints::default();
    already.push(outer);
    RequestContext::get_mut(req.extensions_mut()).tried = already;
    send(&layer, &up, req).await.unwrap();
    let seen = up.seen();
    assert_eq!(
        seen[0].tried,
        vec![outer],
        "the first attempt keeps what it was given"
    );
    assert_eq!(seen[1].tried, vec![outer, endpoint(0)]);
    assert_eq!(seen[2].tried, vec![outer, endpoint(0), endpoint(1)]);
}

type Chunked =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunked(total: usize) -> (Bytes, Chunked) {
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let data = Bytes::from(data);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(8 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    (data, StreamBody::new(futures_util::stream::iter(frames)))
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_cap_is_sent_once_intact_and_not_retried() {
    let layer = RetryLayer::new(RetryPolicy {
        replay_cap: 64 * 1024,
        ..policy(3, "5xx")
    });
    // Streamed, no size hint: the copy is dropped when it passes the cap.
    let (data, body) = chunked(100 * 1024);
    let up = Upstream::new(|_| Act::Status(503));
    let res = send(&layer, &up, Request::new(body)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.headers().get("x-mesh-response-flags").is_none(),
        "not URX: attempts remained"
    );
    assert_eq!(up.calls(), 1);
    assert_eq!(up.seen()[0].body.as_ref().unwrap(), &data);
    assert_eq!(layer.stats().abandoned(), 1);

    // A known length over the cap is not even buffered.
    let big = Bytes::from(vec![7u8; 70 * 1024]);
    let up = Upstream::new(|_| Act::Status(503));
    send(&layer, &up, Request::new(Full::new(big.clone())))
        .await
        .unwrap();
    assert_eq!(up.calls(), 1);
    assert_eq!(up.seen()[0].body.as_ref().unwrap(), &big);

    // Under the cap, the same body is retried and replayed intact.
    let (data, body) = chunked(60 * 1024);
    let up = Upstream::new(|n| Act::Status(if n == 0 { 503 } else { 200 }));
    assert_eq!(
        send(&layer, &up, Request::new(body))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.calls(), 2);
    assert_eq!(up.seen()[1].body.as_ref().unwrap(), &data);
}

#[tokio::test(start_paused = true)]
async fn the_retry_limit_refuses_retries_and_returns_the_last_response() {
    let limit = SharedLimit::new(0);
    let layer = RetryLayer::new(policy(3, "5xx")).limit(limit.clone());
    let up = Upstream::new(|_| Act::Status(503));
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.body(), "try 1");
    assert!(
        res.headers().get("x-mesh-response-flags").is_none(),
        "overflow is not URX"
    );
    assert_eq!(up.calls(), 1);
    assert_eq!(layer.stats().overflow(), 1);

    // With room, the retry holds a slot while it runs and gives it back.
    limit.set_max(1);
    let seen_in_flight = Arc::new(Mutex::new(Vec::new()));
    let up = Upstream::new({
        let limit = limit.clone();
        let seen = seen_in_flight.clone();
        move |n| {
            seen.lock().unwrap().push(limit.in_flight());
            Act::Status(if n == 0 { 503 } else { 200 })
        }
    });
    assert_eq!(send(&layer, &up, get()).await.unwrap().status(), 200);
    assert_eq!(*seen_in_flight.lock().unwrap(), vec![0, 1]);
    assert_eq!(limit.in_flight(), 0);

    // A retry's slot is given back when its attempt ends, not with the
    // request: a limit of one allows one retry after another.
    let seen_in_flight = Arc::new(Mutex::new(Vec::new()));
    let up = Upstream::new({
        let limit = limit.clone();
        let seen = seen_in_flight.clone();
        move |n| {
            seen.lock().unwrap().push(limit.in_flight());
            Act::Status(if n < 2 { 503 } else { 200 })
        }
    });
    assert_eq!(send(&layer, &up, get()).await.unwrap().status(), 200);
    assert_eq!(*seen_in_flight.lock().unwrap(), vec![0, 1, 1]);
    assert_eq!(layer.stats().overflow(), 1, "no overflow this time");
}

#[tokio::test(start_paused = true)]
async fn budgets_refuse_retries() {
    // No share and no minimum: nothing may be retried.
    let budget = Arc::new(ConcurrencyBudget::new(0.0, 0).unwrap());
    let layer = RetryLayer::new(policy(3, "5xx")).budget(budget.clone());
    let up = Upstream::new(|_| Act::Status(503));
    assert_eq!(send(&layer, &up, get()).await.unwrap().status(), 503);
    assert_eq!(up.calls(), 1);
    assert_eq!(
        budget.active_requests(),
        0,
        "the request was counted and ended"
    );
    assert_eq!(budget.retries_in_flight(), 0);

    // tower's form: a reserve of one retry for the window, no deposits.
    let tps = Arc::new(tps_budget(Duration::from_secs(1), 1, 0.0).unwrap());
    let layer = RetryLayer::new(policy(3, "5xx")).budget(tps);
    let up = Upstream::new(|_| Act::Status(503));
    send(&layer, &up, get()).await.unwrap();
    assert_eq!(up.calls(), 2, "one retry from the reserve");
    let up = Upstream::new(|_| Act::Status(503));
    send(&layer, &up, get()).await.unwrap();
    assert_eq!(up.calls(), 1, "the reserve is spent");
    assert_eq!(layer.stats().overflow(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_shortens_ours_and_never_lengthens_it() {
    let cases = [
        (Some(1000), "grpc-timeout", "100m", 100),
        (Some(1000), "grpc-timeout", "5S", 1000),
        (None, "grpc-timeout", "200m", 200),
        (Some(1000), "grpc-timeout", "garbage", 1000),
        (Some(1000), "x-deadline-ms", "300", 300),
    ];
    for (configured, header, value, expect_ms) in cases {
        let layer = RetryLayer::new(RetryPolicy {
            timeout: configured.map(Duration::from_millis),
            deadline_header: Some(header.parse().unwrap()),
            ..policy(2, "5xx")
        });
        let up = Upstream::new(|_| Act::Hang);
        let mut req = get();
        req.headers_mut().insert(
            http::HeaderName::from_static(header),
            HeaderValue::from_static(value),
        );
        let start = Instant::now();
        let err = send(&layer, &up, req).await.unwrap_err();
        assert_eq!(
            Instant::now() - start,
            Duration::from_millis(expect_ms),
            "{header}: {value}"
        );
        assert!(matches!(
            MeshError::find(&*err),
            Some(MeshError::RequestTimeout(_))
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn hedging_takes_the_first_good_answer_and_cancels_the_other() {
    let layer = RetryLayer::new(RetryPolicy {
        hedge_delay: Some(Duration::from_millis(50)),
        ..policy(2, "5xx")
    });
    let up = Upstream::new(|n| {
        if n == 0 {
            Act::Delay(10_000, 200)
        } else {
            Act::Delay(10, 200)
        }
    });
    let start = Instant::now();
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.body(), "try 2", "the hedge answered first");
    assert_eq!(Instant::now() - start, Duration::from_millis(60));
    assert_eq!(
        up.dropped.load(Ordering::SeqCst),
        1,
        "the slow attempt was cancelled"
    );
    assert_eq!(up.seen()[1].attempt_header, "2");
    assert_eq!(layer.stats().hedges(), 1);

    // Each attempt keeps its own per-try timeout beside the hedge: the
    // first times out at 100 ms while the hedge (from 50 ms) still runs, the
    // hedge at 150 ms, and then a retry answers.
    let layer = RetryLayer::new(RetryPolicy {
        hedge_delay: Some(Duration::from_millis(50)),
        per_try_timeout: Some(Duration::from_millis(100)),
        backoff: Backoff::with_max(Duration::from_millis(1), Duration::from_millis(1)).unwrap(),
        ..policy(3, "5xx")
    });
    let up = Upstream::new(|n| if n < 2 { Act::Hang } else { Act::Status(200) });
    let start = Instant::now();
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.body(), "try 3");
    let at: Vec<Duration> = up.seen().iter().map(|s| s.at - start).collect();
    assert_eq!(at[..2], [Duration::ZERO, Duration::from_millis(50)]);
    let third = at[2];
    assert!(
        third >= Duration::from_millis(150) && third <= Duration::from_millis(151),
        "the retry after the hedge's own timeout: {third:?}"
    );
    assert_eq!(layer.stats().per_try_timeouts(), 2);

    // An answer within the delay: no hedge.
    let layer = RetryLayer::new(RetryPolicy {
        hedge_delay: Some(Duration::from_millis(50)),
        ..policy(2, "5xx")
    });
    let up = Upstream::new(|_| Act::Delay(20, 200));
    send(&layer, &up, get()).await.unwrap();
    assert_eq!(up.calls(), 1);

    // A hedge's failure does not end the request while the first may still succeed.
    let up = Upstream::new(|n| {
        if n == 0 {
            Act::Delay(200, 200)
        } else {
            Act::Status(503)
        }
    });
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "try 1");
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_inner_service_to_be_ready() {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<RetryBody<Full<Bytes>>>, Response<String>>();
    let layer = RetryLayer::new(policy(2, "5xx"));
    let mut svc = layer.layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = tokio::spawn(svc.call(get()));

    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["x-envoy-attempt-count"], "1");
    send.send_response(Response::builder().status(503).body(String::new()).unwrap());

    // Past any backoff, the retry must not call the mock, which is not ready
    // (tower-test's mock panics on a call without readiness).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!fut.is_finished());
    assert!(futures_util::FutureExt::now_or_never(handle.next_request()).is_none());

    handle.allow(1);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["x-envoy-attempt-count"], "2");
    send.send_response(Response::builder().status(200).body(String::new()).unwrap());
    assert_eq!(fut.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn grpc_unavailable_in_headers_is_retried_under_istios_default() {
    #[derive(Clone)]
    struct Grpc(Arc<AtomicUsize>, Arc<AtomicBool>);
    impl Service<Request<RetryBody<Full<Bytes>>>> for Grpc {
        type Response = Response<()>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Response<()>, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let status = if n == 0 { "14" } else { "0" };
            let mut b = Response::builder().header("content-type", "application/grpc");
            if !self.1.load(Ordering::SeqCst) {
                b = b.header("grpc-status", status);
            }
            std::future::ready(Ok(b.body(()).unwrap()))
        }
    }
    let layer = RetryLayer::new(RetryPolicy::istio_default());
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(Grpc(calls.clone(), Arc::new(AtomicBool::new(false))));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "UNAVAILABLE in headers is retried"
    );

    // Status only in trailers (not in the headers): not retried.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(Grpc(calls.clone(), Arc::new(AtomicBool::new(true))));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_with_nothing_to_say_carries_no_context() {
    // Nothing for the layers below (no deadline, no endpoint slot): no
    // context, which spares http's extensions map; its absence reads as the
    // first attempt. Whether retries are on or off.
    for policy in [RetryPolicy::disabled(), policy(2, "5xx")] {
        let layer = RetryLayer::new(policy);
        let up = Upstream::new(|_| Act::Status(200));
        send(&layer, &up, get()).await.unwrap();
        let seen = up.seen();
        assert!(!seen[0].context);
        assert_eq!(seen[0].attempt, 1);
        assert_eq!(seen[0].attempt_header, "1");
    }
    assert_eq!(Attempt::default(), Attempt::FIRST);
}

#[tokio::test(start_paused = true)]
async fn without_retries_the_body_passes_through_and_timeouts_still_apply() {
    let layer = RetryLayer::new(RetryPolicy {
        per_try_timeout: Some(Duration::from_millis(100)),
        ..RetryPolicy::disabled()
    });
    let up = Upstream::new(|_| Act::Status(503));
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        res.headers().get("x-mesh-response-flags").is_none(),
        "no policy, no URX"
    );
    assert_eq!(up.seen()[0].attempt_header, "1");
    assert!(
        up.seen()[0].context,
        "the per-try deadline travels in the request context"
    );
    assert_eq!(up.seen()[0].attempt, 1);
    assert_eq!(up.seen()[0].body.as_deref().unwrap(), b"hello");
    assert_eq!(layer.stats().per_try_timeouts(), 0);
    let up = Upstream::new(|_| Act::Hang);
    let err = send(&layer, &up, get()).await.unwrap_err();
    assert!(matches!(
        MeshError::find(&*err),
        Some(MeshError::PerTryTimeout(_))
    ));
    assert_eq!(
        StatusCode::GATEWAY_TIMEOUT,
        MeshError::find(&*err).unwrap().status()
    );
    assert_eq!(
        layer.stats().per_try_timeouts(),
        1,
        "counted without retries too"
    );
}

/// Calls a 299 a server error: a classifier that does not judge by status.
#[derive(Clone, Copy)]
struct TwoNinetyNineFails;

impl mesh_core::classify::Classify for TwoNinetyNineFails {
    type Eos = mesh_core::classify::NeverEos;

    fn classify_response<B>(
        &self,
        res: &Response<B>,
    ) -> mesh_core::classify::Classified<Self::Eos> {
        use mesh_core::classify::{Classified, Failure, Outcome};
        match res.status().as_u16() {
            299 => Classified::Ready(Outcome::Failure(Failure::ServerError(
                StatusCode::INTERNAL_SERVER_ERROR,
            ))),
            _ => Classified::Ready(Outcome::from_status(res.status())),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_classifier_that_does_not_judge_by_status_is_asked_below_500() {
    let script = |n| {
        if n == 0 {
            Act::Status(299)
        } else {
            Act::Status(200)
        }
    };
    let up = Upstream::new(script);
    let layer = RetryLayer::new(policy(2, "5xx")).classifier(TwoNinetyNineFails);
    let res = layer.layer(up.clone()).oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.calls(), 2, "the 299 was judged a 5xx and retried");

    // The default classifier judges by status: a 299 is a success.
    let up = Upstream::new(script);
    let res = send(&RetryLayer::new(policy(2, "5xx")), &up, get())
        .await
        .unwrap();
    assert_eq!(res.status(), 299);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_status_below_400_is_retried_when_listed() {
    let retry_on: mesh_retry::RetryOn = "retriable-status-codes".parse().unwrap();
    let retry_on = retry_on.with_status_codes([StatusCode::FOUND]);
    let layer = RetryLayer::new(RetryPolicy::new(2, retry_on));
    let up = Upstream::new(|n| {
        if n == 0 {
            Act::Status(302)
        } else {
            Act::Status(200)
        }
    });
    let res = send(&layer, &up, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.calls(), 2, "the listed 302 was retried");

    // Not listed: a 302 is the answer.
    let up = Upstream::new(|n| {
        if n == 0 {
            Act::Status(302)
        } else {
            Act::Status(200)
        }
    });
    let res = send(&RetryLayer::new(policy(2, "5xx")), &up, get())
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_success_marked_ratelimited_is_retried_under_envoy_ratelimited_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let calls = calls.clone();
        tower::service_fn(move |_: Request<RetryBody<Full<Bytes>>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut res = Response::new(format!("try {}", n + 1));
                if n == 0 {
                    res.headers_mut()
                        .insert("x-envoy-ratelimited", HeaderValue::from_static("true"));
                }
                Ok::<_, BoxError>(res)
            }
        })
    };
    let res = RetryLayer::new(policy(2, "envoy-ratelimited"))
        .layer(upstream.clone())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(
        res.body(),
        "try 2",
        "the 200 marked ratelimited was retried"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    calls.store(0, Ordering::SeqCst);
    let res = RetryLayer::new(policy(2, "5xx"))
        .layer(upstream)
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.body(), "try 1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn only_a_request_that_retries_clones_the_inner_service() {
    // Calls 0-9 succeed; call 10 fails and its retry (call 11) succeeds.
    let upstream = Upstream::new(|n| Act::Status(if n == 10 { 503 } else { 200 }));
    let clones = upstream.clones.clone();
    let mut svc = RetryLayer::new(policy(2, "5xx")).layer(upstream.clone());
    let at_start = clones.load(Ordering::SeqCst);
    for n in 0..11 {
        if n == 10 {
            assert_eq!(
                clones.load(Ordering::SeqCst),
                at_start,
                "a request answered by its first attempt clones nothing"
            );
        }
        let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(get())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(upstream.calls(), 12);
    assert_eq!(
        clones.load(Ordering::SeqCst),
        at_start + 1,
        "the retry went to one fresh clone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_too_long_for_the_clock_is_no_timeout() {
    let upstream = Upstream::new(|n| Act::Status(if n == 0 { 503 } else { 200 }));
    let mut p = policy(2, "5xx");
    p.timeout = Some(Duration::MAX);
    p.per_try_timeout = Some(Duration::MAX);
    let layer = RetryLayer::new(p);
    let res = send(&layer, &upstream, get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(upstream.calls(), 2);
}
