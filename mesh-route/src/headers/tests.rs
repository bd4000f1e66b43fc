use std::convert::Infallible;

use http::header::HOST;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{ServiceBuilder, ServiceExt};

use super::HeaderOpsLayer;
use crate::config::{HeaderOperations, Headers};

fn n(s: &'static str) -> HeaderName {
    HeaderName::from_static(s)
}
fn v(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

#[tokio::test]
async fn request_ops_remove_then_set_then_add() {
    let headers = Headers {
        request: HeaderOperations {
            remove: vec![n("x-remove"), n("x-set")],
            set: vec![(n("x-set"), v("new")), (HOST, v("reviews.prod:9080"))],
            add: vec![(n("x-add"), v("two")), (n("x-set"), v("extra"))],
        },
        response: HeaderOperations {
            remove: vec![n("server")],
            set: vec![(n("x-version"), v("v2"))],
            add: vec![(n("x-trace"), v("b"))],
        },
    };
    let svc = ServiceBuilder::new()
        .layer(HeaderOpsLayer::new(headers))
        .service_fn(|req: Request<()>| async move {
            let h = req.headers();
            assert!(h.get("x-remove").is_none());
            let set: Vec<_> = h.get_all("x-set").iter().collect();
            assert_eq!(set, ["new", "extra"], "set overwrote, then add appended");
            let add: Vec<_> = h.get_all("x-add").iter().collect();
            assert_eq!(add, ["one", "two"]);
            // Setting host rewrites the URI authority too.
            assert_eq!(req.uri().authority().unwrap(), "reviews.prod:9080");
            assert_eq!(h[HOST], "reviews.prod:9080");
            Ok::<_, Infallible>(
                Response::builder()
                    .header("server", "envoy")
                    .header("x-version", "v1")
                    .header("x-trace", "a")
                    .body(())
                    .unwrap(),
            )
        });
    let req = Request::get("http://reviews:9080/r")
        .header("x-remove", "gone")
        .header("x-set", "old")
        .header("x-add", "one")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert!(res.headers().get("server").is_none());
    assert_eq!(res.headers()["x-version"], "v2");
    let trace: Vec<_> = res.headers().get_all("x-trace").iter().collect();
    assert_eq!(trace, ["a", "b"]);
}

#[tokio::test]
async fn empty_ops_change_nothing() {
    let svc = ServiceBuilder::new()
        .layer(HeaderOpsLayer::new(Headers::default()))
        .service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().len()))
        });
    let req = Request::get("/").header("a", "1").body(()).unwrap();
    assert_eq!(*svc.oneshot(req).await.unwrap().body(), 1);
}
