//! Router tests: the bookinfo virtual services end to end over in-process
//! destinations, first-match order, NR, route names, raw paths, config errors.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderName, Request, Response, StatusCode};
use mesh_core::context::RequestContext;
use mesh_core::{BoxError, MeshError, RESPONSE_FLAGS_HEADER};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use super::{Forward, Role, RouteStack, Router};
use crate::body::RouteBody;
use crate::config::*;
use crate::matching::RouteMatcher;

type Dest = BoxCloneSyncService<Request<RouteBody<String>>, Response<String>, Infallible>;
type TestRouter = Router<RouteStack<Forward<Dest>, Dest>>;

/// A destination answering `host/subset route path`.
fn dest(d: &Destination) -> Dest {
    let id = format!("{}/{}", d.host, d.subset.as_deref().unwrap_or("-"));
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<RouteBody<String>>| {
        let route = route_of(&req);
        let body = format!("{id} {route} {}", req.uri());
        async move { Ok(Response::new(body)) }
    }))
}

/// The route name in a request's context ("" without one).
fn route_of<B>(req: &Request<B>) -> String {
    RequestContext::get(req.extensions())
        .and_then(|c| c.route.as_ref())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Header operations setting `name: 1` on the request.
fn setting(name: &'static str) -> Headers {
    Headers {
        request: HeaderOperations {
            set: vec![(
                HeaderName::from_static(name),
                http::HeaderValue::from_static("1"),
            )],
            ..Default::default()
        },
        response: HeaderOperations::default(),
    }
}

/// A match on a path prefix.
fn uri(prefix: &str) -> HttpMatch {
    HttpMatch::default().with_uri(StringMatch::prefix(prefix))
}

fn router(routes: Vec<RouteConfig>) -> TestRouter {
    Router::builder(routes)
        .build(|t| Ok(dest(t.destination)))
        .unwrap()
}

fn sub(host: &str, subset: &str) -> Destination {
    Destination::new(host).with_subset(subset)
}

fn jason() -> HttpMatch {
    HttpMatch::default().with_header(
        HeaderName::from_static("end-user"),
        StringMatch::exact("jason"),
    )
}

fn get(path: &str, user: Option<&str>) -> Request<String> {
    let mut b = Request::get(path);
    if let Some(u) = user {
        b = b.header("end-user", u);
    }
    b.body(String::new()).unwrap()
}

/// The destination's answer, or the status and flag of the mesh's error.
async fn send(router: &TestRouter, req: Request<String>) -> Result<String, (u16, String)> {
    match router.clone().oneshot(req).await {
        Ok(res) => Ok(res.into_body()),
        Err(e) => {
            let res = MeshError::find(&*e).unwrap().to_response::<String>();
            let flag = res.headers()[RESPONSE_FLAGS_HEADER]
                .to_str()
                .unwrap()
                .to_owned();
            Err((res.status().as_u16(), flag))
        }
    }
}

fn v1_of(host: &str) -> RouteConfig {
    RouteConfig::to("", sub(host, "v1"))
}

#[tokio::test]
async fn bookinfo_virtual_services() {
    // (manifest, routes, request path, end-user, expected answer)
    type Expect = Result<&'static str, (u16, &'static str)>;
    type Case = (
        &'static str,
        Vec<RouteConfig>,
        &'static str,
        Option<&'static str>,
        Expect,
    );
    let cases: Vec<Case> = vec![
        (
            "all-v1 productpage",
            vec![v1_of("productpage")],
            "/productpage",
            None,
            Ok("productpage/v1 route-0"),
        ),
        (
            "all-v1 details",
            vec![v1_of("details")],
            "/details/0",
            Some("jason"),
            Ok("details/v1 route-0"),
        ),
        (
            "reviews-test-v2 jason",
            vec![
                RouteConfig::to("", sub("reviews", "v2")).with_match(jason()),
                v1_of("reviews"),
            ],
            "/reviews/0",
            Some("jason"),
            Ok("reviews/v2 route-0"),
        ),
        (
            "reviews-test-v2 other",
            vec![
                RouteConfig::to("", sub("reviews", "v2")).with_match(jason()),
                v1_of("reviews"),
            ],
            "/reviews/0",
            Some("bob"),
            Ok("reviews/v1 route-1"),
        ),
        (
            "reviews-jason-v2-v3 other",
            vec![
                RouteConfig::to("", sub("reviews", "v2")).with_match(jason()),
                RouteConfig::to("", sub("reviews", "v3")),
            ],
            "/reviews/0",
            None,
            Ok("reviews/v3 route-1"),
        ),
        (
            "ratings-test-abort jason",
            vec![
                RouteConfig::to("", sub("ratings", "v1"))
                    .with_match(jason())
                    .with_fault(FaultConfig {
                        delay: None,
                        abort: Some(AbortFault {
                            status: AbortStatus::Http(StatusCode::INTERNAL_SERVER_ERROR),
                            percentage: 100.0, // `percent: 100`
                        }),
                    }),
                v1_of("ratings"),
            ],
            "/ratings/0",
            Some("jason"),
            Err((500, "FI")),
        ),
        (
            "ratings-test-abort other",
            vec![
                RouteConfig::to("", sub("ratings", "v1"))
                    .with_match(jason())
                    .with_fault(FaultConfig {
                        delay: None,
                        abort: Some(AbortFault {
                            status: AbortStatus::Http(StatusCode::INTERNAL_SERVER_ERROR),
                            percentage: 100.0,
                        }),
                    }),
                v1_of("ratings"),
            ],
            "/ratings/0",
            None,
            Ok("ratings/v1 route-1"),
        ),
        (
            "fault-injection-details-v1",
            vec![
                RouteConfig::to("", sub("details", "v1")).with_fault(FaultConfig {
                    delay: None,
                    abort: Some(AbortFault {
                        status: AbortStatus::Http(StatusCode::from_u16(555).unwrap()),
                        percentage: 100.0, // `percentage: {value: 100.0}`
                    }),
                }),
                v1_of("details"),
            ],
            "/details/0",
            None,
            Err((555, "FI")),
        ),
        (
            "bookinfo gateway productpage",
            vec![gateway()],
            "/api/v1/products/0",
            None,
            Ok("productpage/- route-0 /api/v1/products/0"),
        ),
        (
            "bookinfo gateway NR",
            vec![gateway()],
            "/admin",
            None,
            Err((404, "NR")),
        ),
    ];
    for (what, routes, path, user, expect) in cases {
        let r = router(routes);
        let got = send(&r, get(path, user)).await;
        match (&got, expect) {
            (Ok(body), Ok(want)) => assert!(body.starts_with(want), "{what}: {body}"),
            (Err((s, f)), Err((ws, wf))) => assert_eq!((*s, f.as_str()), (ws, wf), "{what}"),
            _ => panic!("{what}: got {got:?}, want {expect:?}"),
        }
    }
}

/// bookinfo-gateway.yaml's route.
fn gateway() -> RouteConfig {
    let uri = |m| HttpMatch::default().with_uri(m);
    RouteConfig::to("", Destination::new("productpage").with_port(9080))
        .with_match(uri(StringMatch::exact("/productpage")))
        .with_match(uri(StringMatch::prefix("/static")))
        .with_match(uri(StringMatch::exact("/login")))
        .with_match(uri(StringMatch::exact("/logout")))
        .with_match(uri(StringMatch::prefix("/api/v1/products")))
}

#[tokio::test(start_paused = true)]
async fn bookinfo_ratings_delay_for_jason_only() {
    // virtual-service-ratings-test-delay.yaml: 7s for jason, `percent: 100`.
    let r = router(vec![
        RouteConfig::to("jason", sub("ratings", "v1"))
            .with_match(jason())
            .with_fault(FaultConfig {
                delay: Some(DelayFault {
                    fixed_delay: Duration::from_secs(7),
                    percentage: 100.0,
                }),
                abort: None,
            }),
        RouteConfig::to("rest", sub("ratings", "v1")),
    ]);
    let start = Instant::now();
    let res = r
        .clone()
        .oneshot(get("/ratings/0", Some("jason")))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    assert_eq!(res.headers()[RESPONSE_FLAGS_HEADER], "DI");
    let start = Instant::now();
    let res = r.oneshot(get("/ratings/0", None)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(res.headers().get(RESPONSE_FLAGS_HEADER).is_none());
}

#[tokio::test]
async fn bookinfo_reviews_v2_v3_fifty_fifty() {
    let r = router(vec![RouteConfig::forward(
        "reviews",
        vec![
            WeightedDestination::new(sub("reviews", "v2"), 50),
            WeightedDestination::new(sub("reviews", "v3"), 50),
        ],
    )]);
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let body = send(&r, get("/", None)).await.unwrap();
        seen.insert(body.split(' ').next().unwrap().to_owned());
    }
    // Each side is missing with probability 2^-64.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["reviews/v2", "reviews/v3"]
    );
}

#[tokio::test]
async fn first_match_wins_and_names_join_route_and_match() {
    let r = router(vec![
        RouteConfig::to("api", Destination::new("a"))
            .with_match(
                HttpMatch::default()
                    .with_uri(StringMatch::prefix("/api/v1"))
                    .named("v1"),
            )
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/api/v2"))),
        RouteConfig::to("broad", Destination::new("b"))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/api"))),
        RouteConfig::to("", Destination::new("c")),
    ]);
    assert!(
        send(&r, get("/api/v1/x", None))
            .await
            .unwrap()
            .starts_with("a/- api.v1 ")
    );
    assert!(
        send(&r, get("/api/v2/x", None))
            .await
            .unwrap()
            .starts_with("a/- api ")
    );
    assert!(
        send(&r, get("/api/v3", None))
            .await
            .unwrap()
            .starts_with("b/- broad ")
    );
    assert!(
        send(&r, get("/", None))
            .await
            .unwrap()
            .starts_with("c/- route-2 ")
    );
    let names: Vec<_> = r.route_names().map(ToString::to_string).collect();
    assert_eq!(names, ["api.v1", "api", "broad", "route-2"]);
    assert_eq!(r.route(&get("/api/v3", None)).map(|(i, _)| i), Some(2));
}

#[tokio::test]
async fn dot_dot_cannot_reach_admin_through_public() {
    let prefix = |p: &str| HttpMatch::default().with_uri(StringMatch::prefix(p));
    let r = router(vec![
        RouteConfig::to("admin", Destination::new("admin")).with_match(prefix("/admin")),
        RouteConfig::to("public", Destination::new("public")).with_match(prefix("/public")),
    ]);
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
    ] {
        let body = send(&r, get(path, None)).await.unwrap();
        // Routed by the /public rule, to the public service, with the path as
        // received: the admin handler is never reached.
        assert_eq!(body, format!("public/- public {path}"));
    }
    for path in ["/./admin", "//admin", "/%61dmin", "/ADMIN"] {
        assert_eq!(
            send(&r, get(path, None)).await,
            Err((404, "NR".into())),
            "{path}"
        );
    }
}

#[tokio::test]
async fn no_routes_is_nr_for_everything() {
    let r = router(vec![]);
    assert!(r.is_empty());
    assert_eq!(send(&r, get("/", None)).await, Err((404, "NR".into())));
}

#[tokio::test]
async fn rewrite_uses_each_match_blocks_own_prefix() {
    let prefix = |p: &str| HttpMatch::default().with_uri(StringMatch::prefix(p));
    let r = router(vec![
        RouteConfig::to("r", Destination::new("svc"))
            .with_match(prefix("/old/"))
            .with_match(prefix("/legacy/api/"))
            .with_rewrite(Rewrite {
                uri: Some("/new/".into()),
                authority: None,
            }),
    ]);
    assert_eq!(
        send(&r, get("/old/a?x=1", None)).await.unwrap(),
        "svc/- r /new/a?x=1"
    );
    assert_eq!(
        send(&r, get("/legacy/api/b", None)).await.unwrap(),
        "svc/- r /new/b"
    );
}

#[tokio::test]
async fn redirect_route_answers_without_a_destination() {
    let r = router(vec![RouteConfig::redirect(
        "moved",
        Redirect {
            uri: Some("/v2".into()),
            ..Redirect::default()
        },
    )]);
    let res = r.oneshot(get("/v1?a=b", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(res.headers()["location"], "/v2?a=b");
}

#[tokio::test]
async fn route_and_destination_header_ops_both_apply() {
    let h = |name: &'static str, v: &'static str| Headers {
        request: HeaderOperations::default(),
        response: HeaderOperations {
            add: vec![(
                HeaderName::from_static(name),
                http::HeaderValue::from_static(v),
            )],
            ..Default::default()
        },
    };
    let r = router(vec![
        RouteConfig::forward(
            "r",
            vec![WeightedDestination::new(Destination::new("a"), 1).with_headers(h("x-dest", "a"))],
        )
        .with_headers(h("x-route", "r")),
    ]);
    let res = r.oneshot(get("/", None)).await.unwrap();
    assert_eq!(res.headers()["x-dest"], "a");
    assert_eq!(res.headers()["x-route"], "r");
}

#[tokio::test]
async fn routes_configuring_no_layer_skip_them_and_the_others_keep_theirs() {
    let abort = |percentage| FaultConfig {
        delay: None,
        abort: Some(AbortFault {
            status: AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE),
            percentage,
        }),
    };
    let set = setting("x-set");
    let shadowed = Arc::new(AtomicUsize::new(0));
    let routes = vec![
        RouteConfig::to("abort", sub("a", "v1"))
            .with_match(uri("/abort"))
            .with_fault(abort(100.0)),
        // A fault that never fires is no fault (Istio's 0 %).
        RouteConfig::to("never", sub("a", "v1"))
            .with_match(uri("/never"))
            .with_fault(abort(0.0)),
        RouteConfig::to("headers", sub("a", "v1"))
            .with_match(uri("/headers"))
            .with_headers(set),
        RouteConfig::to("rewrite", sub("a", "v1"))
            .with_match(uri("/old"))
            .with_rewrite(Rewrite {
                uri: Some("/new".into()),
                authority: None,
            }),
        RouteConfig::to("mirror", sub("a", "v1"))
            .with_match(uri("/mirror"))
            .with_mirror(MirrorPolicy::new(Destination::new("shadow"), None)),
        RouteConfig::to("plain", sub("a", "v1")),
    ];
    let s = shadowed.clone();
    let r = Router::builder(routes)
        .build(move |t| {
            if t.role == Role::Primary {
                return Ok(BoxCloneSyncService::new(tower::service_fn(
                    |req: Request<RouteBody<String>>| {
                        let route = route_of(&req);
                        let set = req
                            .headers()
                            .get("x-set")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = format!("{route} {} {set:?}", req.uri());
                        async move { Ok(Response::new(body)) }
                    },
                )));
            }
            let s = s.clone();
            Ok(BoxCloneSyncService::new(tower::service_fn(
                move |_: Request<RouteBody<String>>| {
                    s.fetch_add(1, Ordering::SeqCst);
                    async { Ok(Response::new(String::new())) }
                },
            )))
        })
        .unwrap();
    let direct: Vec<bool> = (0..r.len()).map(|i| r.service(i).is_direct()).collect();
    assert_eq!(direct, [false, true, false, false, false, true]);

    assert_eq!(send(&r, get("/abort", None)).await, Err((503, "FI".into())));
    assert_eq!(
        send(&r, get("/never", None)).await.unwrap(),
        "never /never None"
    );
    assert_eq!(
        send(&r, get("/headers", None)).await.unwrap(),
        "headers /headers Some(\"1\")"
    );
    assert_eq!(
        send(&r, get("/old/x", None)).await.unwrap(),
        "rewrite /new/x None"
    );
    assert_eq!(
        send(&r, get("/mirror", None)).await.unwrap(),
        "mirror /mirror None"
    );
    assert_eq!(send(&r, get("/p", None)).await.unwrap(), "plain /p None");
    for _ in 0..100 {
        if shadowed.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(shadowed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_lone_destination_without_header_operations_is_called_without_a_split() {
    let h = setting("x-dest");
    let routes = vec![
        RouteConfig::forward(
            "headers",
            vec![WeightedDestination::new(sub("a", "v1"), 100).with_headers(h)],
        )
        .with_match(uri("/headers")),
        RouteConfig::forward(
            "two",
            vec![
                WeightedDestination::new(sub("a", "v1"), 0),
                WeightedDestination::new(sub("a", "v2"), 100),
            ],
        )
        .with_match(uri("/two")),
        // A lone destination takes every request whatever its weight.
        RouteConfig::forward("one", vec![WeightedDestination::new(sub("a", "v3"), 0)]),
    ];
    let r = Router::builder(routes)
        .build(|t| {
            let id = t.destination.subset.clone().unwrap_or_default();
            Ok(Dest::new(tower::service_fn(
                move |req: Request<RouteBody<String>>| {
                    let set = req.headers().contains_key("x-dest");
                    let body = format!("{id} {set}");
                    async move { Ok(Response::new(body)) }
                },
            )))
        })
        .unwrap();
    let kinds: Vec<bool> = (0..r.len())
        .map(|i| format!("{:?}", r.service(i)).contains("Forward::Single"))
        .collect();
    assert_eq!(kinds, [false, false, true]);
    assert_eq!(send(&r, get("/headers", None)).await.unwrap(), "v1 true");
    assert_eq!(send(&r, get("/two", None)).await.unwrap(), "v2 false");
    assert_eq!(send(&r, get("/", None)).await.unwrap(), "v3 false");
}

#[tokio::test]
async fn build_with_wraps_each_route_once_and_targets_say_their_role() {
    let wrapped = Arc::new(AtomicUsize::new(0));
    let roles = std::sync::Mutex::new(Vec::new());
    let routes = vec![
        RouteConfig::to("a", Destination::new("a"))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/a")))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/aa")))
            .with_mirror(MirrorPolicy::new(Destination::new("shadow"), None)),
        RouteConfig::to("b", Destination::new("b")),
    ];
    let w = wrapped.clone();
    let r = Router::builder(routes)
        .build_with(
            |t| {
                roles
                    .lock()
                    .unwrap()
                    .push((t.destination.host.clone(), t.role));
                Ok(dest(t.destination))
            },
            move |route, forward| {
                w.fetch_add(1, Ordering::SeqCst);
                // A per-route policy from elsewhere: here, tag the response.
                let name = route.name.clone();
                tower::util::MapResponse::new(forward, move |mut res: Response<String>| {
                    res.headers_mut().insert("x-policy", name.parse().unwrap());
                    res
                })
            },
        )
        .unwrap();
    assert_eq!(
        wrapped.load(Ordering::SeqCst),
        2,
        "once per route, not per match block"
    );
    assert_eq!(
        roles.into_inner().unwrap(),
        [
            ("a".into(), Role::Primary),
            ("shadow".into(), Role::Mirror),
            ("b".into(), Role::Primary)
        ]
    );
    let res = r.clone().oneshot(get("/b", None)).await.unwrap();
    assert_eq!(res.headers()["x-policy"], "b");
}

#[tokio::test]
async fn a_route_with_an_unready_destination_does_not_block_others() {
    #[derive(Clone)]
    struct NeverReady;
    impl Service<Request<RouteBody<String>>> for NeverReady {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Pending
        }
        fn call(&mut self, _: Request<RouteBody<String>>) -> Self::Future {
            unreachable!("never ready, never called")
        }
    }
    let routes = vec![
        RouteConfig::to("stuck", Destination::new("stuck"))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/stuck"))),
        RouteConfig::to("ok", Destination::new("ok")),
    ];
    let r = Router::builder(routes)
        .build(|t| {
            Ok(if t.destination.host == "stuck" {
                Dest::new(NeverReady)
            } else {
                dest(t.destination)
            })
        })
        .unwrap();
    let mut stuck = Box::pin(r.clone().oneshot(get("/stuck", None)));
    assert!(futures_util::FutureExt::now_or_never(stuck.as_mut()).is_none());
    let mut svc = r.clone();
    // The router itself stays ready and serves the other route.
    let body = svc
        .ready()
        .await
        .unwrap()
        .call(get("/fine", None))
        .await
        .unwrap();
    assert!(body.body().starts_with("ok/- ok"));
}

/// A route service ready once `open` is set (waking the task that waited),
/// failing in `poll_ready` when `fail`; it checks it is never called unready
/// (a clone starts unready, so a clone called in place of the instance that
/// was ready fails too) and counts its clones.
struct Gate {
    open: Arc<std::sync::atomic::AtomicBool>,
    waiter: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
    clones: Arc<AtomicUsize>,
    fail: bool,
    ready: bool,
}

impl Clone for Gate {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Gate {
            open: self.open.clone(),
            waiter: self.waiter.clone(),
            clones: self.clones.clone(),
            fail: self.fail,
            ready: false,
        }
    }
}

impl Gate {
    fn new(fail: bool) -> Self {
        Gate {
            open: Arc::default(),
            waiter: Arc::default(),
            clones: Arc::default(),
            fail,
            ready: false,
        }
    }

    fn clones(&self) -> usize {
        self.clones.load(Ordering::SeqCst)
    }

    /// This gate when it is broken, else `other`'s.
    fn or(self, other: &Gate) -> Gate {
        if self.fail { self } else { other.clone() }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(w) = self.waiter.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl<B> Service<Request<B>> for Gate {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<String>, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        if self.fail {
            return std::task::Poll::Ready(Err("gate broken".into()));
        }
        *self.waiter.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(Ordering::SeqCst) {
            self.ready = true;
            return std::task::Poll::Ready(Ok(()));
        }
        std::task::Poll::Pending
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called unready");
        let route = route_of(&req);
        std::future::ready(Ok(Response::new(route)))
    }
}

#[tokio::test]
async fn a_route_service_not_ready_at_once_is_driven_to_readiness_with_the_tasks_waker() {
    let uri = |p: &str| RouteMatcher::new(&[HttpMatch::default().with_uri(StringMatch::prefix(p))]);
    let slow = Gate::new(false);
    let ready = Gate::new(false);
    ready.open();
    let r = Router::new([
        ("slow".to_owned(), uri("/slow").unwrap(), slow.clone()),
        (
            "broken".to_owned(),
            uri("/broken").unwrap(),
            Gate::new(true),
        ),
        ("ready".to_owned(), RouteMatcher::any(), ready),
    ]);
    let waiting = tokio::spawn(r.clone().oneshot(get("/slow", None)));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    // The other routes go on meanwhile.
    assert_eq!(
        r.clone().oneshot(get("/", None)).await.unwrap().body(),
        "ready"
    );
    let err = r.clone().oneshot(get("/broken", None)).await.unwrap_err();
    assert_eq!(err.to_string(), "gate broken");
    // Opening the gate wakes the waiting request's task (not a stand-in waker).
    slow.open();
    let res = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert_eq!(res.unwrap().unwrap().unwrap().body(), "slow");
}

/// The builder's single-destination route calls a ready destination in
/// place; one not ready at once waits, as a clone, for the task's waker.
#[tokio::test]
async fn a_destination_not_ready_at_once_is_driven_to_readiness_with_the_tasks_waker() {
    let slow = Gate::new(false);
    let routes = vec![
        RouteConfig::to("broken", Destination::new("broken"))
            .with_match(HttpMatch::default().with_uri(StringMatch::prefix("/broken"))),
        RouteConfig::to("slow", Destination::new("slow")),
    ];
    let r = Router::builder(routes)
        .build(|t| Ok(Gate::new(t.destination.host == "broken").or(&slow)))
        .unwrap();
    let waiting = tokio::spawn(r.clone().oneshot(get("/x", None)));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    let err = r.clone().oneshot(get("/broken", None)).await.unwrap_err();
    assert_eq!(err.to_string(), "gate broken");
    slow.open();
    let res = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert_eq!(res.unwrap().unwrap().unwrap().body(), "slow");
    // Once open, a request is answered at once, by the router's one clone of
    // the route's service: the destination is called in place.
    let before = slow.clones();
    let res = futures_util::FutureExt::now_or_never(r.clone().oneshot(get("/y", None)));
    assert_eq!(res.unwrap().unwrap().body(), "slow");
    assert_eq!(slow.clones() - before, 1);
}

/// A destination that queued for readiness (here a semaphore's permit)
/// waits in that place: the instance asked goes into the response future,
/// and a clone of it, queued behind, is not what waits.
#[tokio::test]
async fn a_destination_that_queued_for_readiness_keeps_its_place() {
    let (finish, finished) = tokio::sync::watch::channel(false);
    let slow = tower::service_fn(move |_: Request<()>| {
        let mut finished = finished.clone();
        async move {
            let _ = finished.wait_for(|done| *done).await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let mut forward = Forward::single(tower::limit::ConcurrencyLimit::new(slow, 1));
    // The first request takes the one permit; the second queues for it.
    let first = tokio::spawn(forward.call(Request::new(())));
    let second = tokio::spawn(forward.call(Request::new(())));
    tokio::task::yield_now().await;
    assert!(!second.is_finished());
    finish.send_replace(true);
    first.await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second).await;
    assert!(second.expect("the queued request got the permit").is_ok());
}

#[test]
fn config_errors_name_the_route() {
    let zero = RouteConfig::forward(
        "reviews-split",
        vec![
            WeightedDestination::new(sub("reviews", "v1"), 0),
            WeightedDestination::new(sub("reviews", "v2"), 0),
        ],
    );
    let bad_regex = RouteConfig::to("bad-regex", Destination::new("x"))
        .with_match(HttpMatch::default().with_uri(StringMatch::regex("(")));
    let bad_fault = RouteConfig::to("bad-fault", Destination::new("x")).with_fault(FaultConfig {
        delay: None,
        abort: Some(AbortFault {
            status: AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE),
            percentage: 150.0,
        }),
    });
    let both = RouteConfig::redirect("both", Redirect::default()).with_rewrite(Rewrite {
        uri: Some("/x".into()),
        authority: None,
    });
    let bad_mirror = RouteConfig::to("bad-mirror", Destination::new("x"))
        .with_mirror(MirrorPolicy::new(Destination::new("m"), Some(-1.0)));
    let empty = RouteConfig::forward("empty", vec![]);
    for (route, says) in [
        (zero, "total destination weight = 0"),
        (bad_regex, "invalid regex"),
        (bad_fault, "percentage 150"),
        (both, "rewrite cannot be combined"),
        (bad_mirror, "mirror percentage"),
        (empty, "no destination"),
    ] {
        let name = route.name.clone();
        let err = Router::builder(vec![route])
            .build(|t| Ok(dest(t.destination)))
            .unwrap_err();
        assert_eq!(err.route(), Some(name.as_str()));
        let text = err.to_string();
        assert!(text.starts_with(&format!("route `{name}`: ")), "{text}");
        assert!(text.contains(says), "{text}");
    }
    // A lone destination with weight 0 takes everything: not an error.
    assert!(
        Router::builder(vec![RouteConfig::forward(
            "lone",
            vec![WeightedDestination::new(Destination::new("x"), 0)],
        )])
        .build(|t| Ok(dest(t.destination)))
        .is_ok()
    );
    // The destination's own failure names route and destination.
    let err = Router::builder(vec![RouteConfig::to("r", sub("reviews", "v9"))])
        .build(|_| Err::<Dest, BoxError>("no such subset".into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `r`: destination reviews (subset v9): no such subset"
    );
}

#[tokio::test]
async fn route_names_can_be_left_out_of_the_request() {
    let routes = vec![v1_of("productpage")];
    let named = router(routes.clone());
    assert_eq!(
        send(&named, get("/a", None)).await.unwrap(),
        "productpage/v1 route-0 /a"
    );
    let unnamed = router(routes).with_route_names(false);
    assert_eq!(
        send(&unnamed, get("/a", None)).await.unwrap(),
        "productpage/v1  /a",
        "no route name reached the destination"
    );
}
