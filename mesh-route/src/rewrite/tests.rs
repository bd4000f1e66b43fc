use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt};

use super::{RedirectService, RewriteLayer};
use crate::config::{ConfigErrorKind, Redirect, Rewrite};

/// Echoes the URI, Host and original path it received.
async fn rewritten(layer: RewriteLayer, req: Request<()>) -> (String, String, String) {
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<()>| async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            Ok::<_, Infallible>(Response::new((
                req.uri().to_string(),
                h("host"),
                h("x-envoy-original-path"),
            )))
        });
    svc.oneshot(req).await.unwrap().into_body()
}

fn rw(uri: Option<&str>, authority: Option<&str>) -> RewriteLayer {
    RewriteLayer::new(Rewrite {
        uri: uri.map(Into::into),
        authority: authority.map(Into::into),
    })
    .unwrap()
}

#[tokio::test]
async fn uri_replaces_the_matched_prefix_and_keeps_the_query() {
    let layer = rw(Some("/v2/"), None).matched_prefix("/api/");
    let (uri, _, original) =
        rewritten(layer, Request::get("/api/users/7?x=1").body(()).unwrap()).await;
    assert_eq!(uri, "/v2/users/7?x=1");
    assert_eq!(original, "/api/users/7");
}

#[tokio::test]
async fn uri_replaces_the_whole_path_without_a_prefix_match() {
    let (uri, _, _) = rewritten(
        rw(Some("/health"), None),
        Request::get("/status?v").body(()).unwrap(),
    )
    .await;
    assert_eq!(uri, "/health?v");
}

#[tokio::test]
async fn trailing_slash_caveat_is_envoys() {
    // Prefix `/a` rewritten to `/` turns `/a/b` into `//b`, as in Envoy.
    let layer = rw(Some("/"), None).matched_prefix("/a");
    let (uri, _, _) = rewritten(layer, Request::get("/a/b").body(()).unwrap()).await;
    assert_eq!(uri, "//b");
}

#[tokio::test]
async fn authority_replaces_host_and_uri_authority() {
    let (_, host, _) = rewritten(
        rw(None, Some("ratings.prod")),
        Request::get("/")
            .header("host", "ratings")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(host, "ratings.prod");
    let (uri, host, _) = rewritten(
        rw(None, Some("ratings.prod:9080")),
        Request::get("http://ratings/x").body(()).unwrap(),
    )
    .await;
    assert_eq!(
        (uri.as_str(), host.as_str()),
        ("http://ratings.prod:9080/x", "ratings.prod:9080")
    );
}

#[test]
fn invalid_rewrites_are_refused() {
    for (uri, authority) in [(Some("has space"), None), (None, Some("bad/host"))] {
        let err = RewriteLayer::new(Rewrite {
            uri: uri.map(Into::into),
            authority: authority.map(Into::into),
        })
        .unwrap_err();
        assert!(
            matches!(err.kind(), ConfigErrorKind::InvalidUri { .. }),
            "{err}"
        );
    }
}

async fn redirect(config: Redirect, req: Request<()>) -> (StatusCode, String) {
    let svc = RedirectService::<()>::new(config).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status(), location)
}

#[tokio::test]
async fn redirects() {
    let get = |uri: &str| {
        Request::get(uri)
            .header("host", "ratings:9080")
            .body(())
            .unwrap()
    };
    // Defaults: 301, same scheme/authority/path, query kept.
    assert_eq!(
        redirect(Redirect::default(), get("/a?q=1")).await,
        (
            StatusCode::MOVED_PERMANENTLY,
            "http://ratings:9080/a?q=1".into()
        )
    );
    // uri replaces the whole path; the query stays.
    let r = Redirect {
        uri: Some("/b".into()),
        ..Redirect::default()
    };
    assert_eq!(
        redirect(r, get("/a/c?q=1")).await.1,
        "http://ratings:9080/b?q=1"
    );
    // uri with its own query replaces the query.
    let r = Redirect {
        uri: Some("/b?z=2".into()),
        ..Redirect::default()
    };
    assert_eq!(
        redirect(r, get("/a?q=1")).await.1,
        "http://ratings:9080/b?z=2"
    );
    // scheme, authority, port, code.
    let r = Redirect {
        scheme: Some("https".into()),
        port: Some(8443),
        redirect_code: StatusCode::FOUND,
        ..Redirect::default()
    };
    assert_eq!(
        redirect(r, get("/a")).await,
        (StatusCode::FOUND, "https://ratings:8443/a".into())
    );
    let r = Redirect {
        authority: Some("new.example".into()),
        ..Redirect::default()
    };
    assert_eq!(redirect(r, get("/a")).await.1, "http://new.example/a");
}

#[test]
fn redirect_code_must_be_3xx() {
    let err = RedirectService::<()>::new(Redirect {
        redirect_code: StatusCode::OK,
        ..Redirect::default()
    })
    .unwrap_err();
    assert!(matches!(err.kind(), ConfigErrorKind::RedirectCode(_)));
}
