use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use mesh_core::context::PeerIdentity;
use tower::{Layer, ServiceExt};

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn allow(name: &str, rules: Vec<Rule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        action: Action::Allow,
        rules,
    }
}

fn deny(name: &str, rules: Vec<Rule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        action: Action::Deny,
        rules,
    }
}

fn from(principals: &[&str]) -> Rule {
    Rule {
        from: vec![Source {
            principals: s(principals),
            ..Source::default()
        }],
        to: vec![],
    }
}

fn to(methods: &[&str], paths: &[&str]) -> Rule {
    Rule {
        from: vec![],
        to: vec![Operation {
            methods: s(methods),
            paths: s(paths),
            ..Operation::default()
        }],
    }
}

const WEB: &str = "cluster.local/ns/default/sa/web";
const DB: &str = "cluster.local/ns/prod/sa/db";

fn check(authz: &Authorizer, principal: &str, method: &str, path: &str) -> bool {
    authz
        .check(&RequestAttributes {
            principal,
            method,
            path,
        })
        .is_allowed()
}

#[test]
fn principal_wildcards() {
    // (pattern, principal, matches)
    let table = [
        (WEB, WEB, true),
        (WEB, DB, false),
        ("spiffe://cluster.local/ns/default/sa/web", WEB, true),
        ("cluster.local/ns/default/*", WEB, true),
        ("cluster.local/ns/default/*", DB, false),
        ("*/sa/web", WEB, true),
        ("*/sa/web", DB, false),
        ("*", WEB, true),
        ("*", "", false),
        (WEB, "", false),
        ("cluster.local/ns/default/sa/we", WEB, false),
    ];
    for (pattern, principal, want) in table {
        let authz = Authorizer::new([allow("p", vec![from(&[pattern])])]);
        assert_eq!(
            check(&authz, principal, "GET", "/"),
            want,
            "pattern {pattern:?} principal {principal:?}"
        );
    }
}

#[test]
fn path_and_method_matching() {
    // (methods, paths, method, path, matches)
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
        &'static str,
        bool,
    );
    let table: [Case; 10] = [
        (&[], &["/info"], "GET", "/info", true),
        (&[], &["/info"], "GET", "/info/x", false),
        (&[], &["/api/*"], "GET", "/api/users", true),
        (&[], &["/api/*"], "GET", "/apix", false),
        (&[], &["*/healthz"], "GET", "/v1/healthz", true),
        (&[], &["*"], "GET", "/", true),
        (&["GET", "HEAD"], &[], "HEAD", "/x", true),
        (&["GET"], &[], "POST", "/x", false),
        (&["GET"], &["/api/*"], "GET", "/api/x", true),
        (&["GET"], &["/api/*"], "POST", "/api/x", false),
    ];
    for (methods, paths, method, path, want) in table {
        let authz = Authorizer::new([allow("p", vec![to(methods, paths)])]);
        assert_eq!(
            check(&authz, WEB, method, path),
            want,
            "{methods:?} {paths:?} vs {method} {path}"
        );
    }
}

#[test]
fn deny_is_evaluated_before_allow() {
    let authz = Authorizer::new([
        allow("allow-all-web", vec![from(&[WEB])]),
        deny("no-admin", vec![to(&[], &["/admin/*"])]),
    ]);
    assert!(check(&authz, WEB, "GET", "/public"));
    let d = authz.check(&RequestAttributes {
        principal: WEB,
        method: "GET",
        path: "/admin/x",
    });
    assert_eq!(
        d,
        Decision::Deny {
            policy: Some("no-admin".into())
        }
    );
}

#[test]
fn default_deny_only_when_an_allow_policy_exists() {
    let none = Authorizer::new([]);
    assert!(check(&none, "", "GET", "/"));
    assert!(none.is_empty());

    let deny_only = Authorizer::new([deny("no-db", vec![from(&[DB])])]);
    assert!(check(&deny_only, WEB, "GET", "/"), "no ALLOW: allowed");
    assert!(!check(&deny_only, DB, "GET", "/"));

    let with_allow = Authorizer::new([allow("web", vec![from(&[WEB])])]);
    assert!(check(&with_allow, WEB, "GET", "/"));
    assert_eq!(
        with_allow.check(&RequestAttributes {
            principal: DB,
            method: "GET",
            path: "/"
        }),
        Decision::Deny { policy: None }
    );
}

#[test]
fn empty_policies_and_rules_follow_istio() {
    // spec: {} (ALLOW, no rules) denies all.
    let deny_all = Authorizer::new([allow("deny-all", vec![])]);
    assert!(!check(&deny_all, WEB, "GET", "/"));
    // rules: [{}] allows all.
    let allow_all = Authorizer::new([allow("allow-all", vec![Rule::default()])]);
    assert!(check(&allow_all, "", "GET", "/"));
    // DENY with no rules denies nothing.
    let deny_nothing = Authorizer::new([deny("d", vec![])]);
    assert!(check(&deny_nothing, WEB, "GET", "/"));
}

#[test]
fn fields_and_within_or_across() {
    // from AND to within a rule; rules OR'ed.
    let authz = Authorizer::new([allow(
        "p",
        vec![
            Rule {
                from: vec![Source {
                    principals: s(&[WEB]),
                    ..Source::default()
                }],
                to: vec![Operation {
                    methods: s(&["GET"]),
                    ..Operation::default()
                }],
            },
            from(&[DB]),
        ],
    )]);
    assert!(check(&authz, WEB, "GET", "/"));
    assert!(!check(&authz, WEB, "POST", "/"));
    assert!(check(&authz, DB, "POST", "/"));
}

#[test]
fn not_fields() {
    // The Istio idiom: deny requests without an mTLS identity.
    let authz = Authorizer::new([deny(
        "require-mtls",
        vec![Rule {
            from: vec![Source {
                not_principals: s(&["*"]),
                ..Source::default()
            }],
            to: vec![],
        }],
    )]);
    assert!(!check(&authz, "", "GET", "/"));
    assert!(check(&authz, WEB, "GET", "/"));

    let authz = Authorizer::new([allow(
        "p",
        vec![Rule {
            from: vec![],
            to: vec![Operation {
                not_paths: s(&["/private/*"]),
                not_methods: s(&["DELETE"]),
                ..Operation::default()
            }],
        }],
    )]);
    assert!(check(&authz, WEB, "GET", "/x"));
    assert!(!check(&authz, WEB, "GET", "/private/x"));
    assert!(!check(&authz, WEB, "DELETE", "/x"));
}

#[tokio::test]
async fn layer_answers_403_and_never_calls_the_inner_service() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
    });
    let svc = AuthorizationLayer::new([allow(
        "web-get",
        vec![Rule {
            from: vec![Source {
                principals: s(&["cluster.local/ns/default/*"]),
                ..Source::default()
            }],
            to: vec![Operation {
                methods: s(&["GET"]),
                ..Operation::default()
            }],
        }],
    )])
    .layer(inner);

    let req = |method: Method, id: Option<&str>| {
        let mut r = Request::builder()
            .method(method)
            .uri("/items?x=1")
            .body(Full::default())
            .unwrap();
        if let Some(id) = id {
            r.extensions_mut().insert(PeerIdentity(id.into()));
        }
        r
    };

    let res = svc
        .clone()
        .oneshot(req(
            Method::GET,
            Some("spiffe://cluster.local/ns/default/sa/web"),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    for r in [
        req(
            Method::POST,
            Some("spiffe://cluster.local/ns/default/sa/web"),
        ),
        req(Method::GET, Some("spiffe://cluster.local/ns/prod/sa/db")),
        req(Method::GET, None),
    ] {
        let res = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(res.status(), 403);
        assert_eq!(res.headers()["content-type"], "text/plain");
        assert!(res.extensions().get::<Decision>().is_some());
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "RBAC: access denied"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "denied requests never reach the app"
    );
}
