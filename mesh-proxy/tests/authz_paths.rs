//! Path variants against an AuthorizationPolicy that denies `/admin`, at the
//! inbound listener of the real binary (raw bytes: a client library would
//! clean the paths up). The proxy normalises each path once (Istio's
//! `MERGE_SLASHES`, escaped slashes refused) and both authorization and the
//! app see that same path; see mesh-proxy/src/path.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use support::{ProxyProc, Recorder, raw_exchange, service_at, sidecar, statuses};

/// An inbound listener in front of `app` with Istio's recommended pair of
/// DENY paths for a subtree.
fn inbound_yaml(app: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: app}}\nspec:\n  ingress:\n  - port: {{number: 0, name: http}}\n    defaultEndpoint: {app}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-admin}}\nspec:\n  action: DENY\n  rules:\n  - to: [{{operation: {{paths: [/admin, /admin/*]}}}}]\n"
    )
}

async fn get(addr: SocketAddr, target: &str) -> u16 {
    let (raw, _) = raw_exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let s = statuses(&raw);
    assert_eq!(s.len(), 1, "{target}: {raw}");
    s[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_admin_gets_past_a_deny() {
    let app = Recorder::start().await;
    let proxy = ProxyProc::start(&inbound_yaml(app.addr));
    let addr = proxy.inbound();

    // Normalised onto `/admin` (or below it), then denied.
    for target in [
        "/admin",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/%2e%2e/admin",
        "/%2E/admin",
        "/admin/",
        "/admin/x/..",
        "/admin;x",
        "/admin;x=1/secret",
        "/;x/admin",
        "///admin//secret",
        "/admin?x=1",
        "/\\admin",
        "/x\\..\\admin",
    ] {
        assert_eq!(get(addr, target).await, 403, "{target}");
    }
    // Refused outright: an app could decode these after the check.
    for target in [
        "/admin%2Fsecret",
        "/admin%2fsecret",
        "/%5Cadmin",
        "/%5cadmin",
        "/admin%00",
        "/admin%zz",
    ] {
        assert_eq!(get(addr, target).await, 400, "{target}");
    }
    assert_eq!(app.hits(), 0, "{:?}", app.paths());

    // Istio's `paths` are case-sensitive: `/ADMIN` is another path, and the
    // app is given exactly that path (an app folding case needs its own rule).
    assert_eq!(get(addr, "/ADMIN").await, 200);
    // What the app gets is the normalised path, the one authorization checked.
    assert_eq!(get(addr, "/public//a/./b/../c?q=%2F").await, 200);
    assert_eq!(get(addr, "/%70ublic/%7e%41").await, 200);
    assert_eq!(
        app.paths(),
        ["/ADMIN", "/public/a/c?q=%2F", "/public/~A"],
        "forwarded paths"
    );
    // Path parameters stay in the forwarded path.
    assert_eq!(get(addr, "/public;jsessionid=1").await, 200);
    assert_eq!(app.paths()[3], "/public;jsessionid=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_sees_the_normalised_path_too() {
    let v1 = Recorder::start().await;
    let v2 = Recorder::start().await;
    let yaml = format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - match: [{{uri: {{prefix: /v2/}}}}]\n    route: [{{destination: {{host: web, subset: v2}}}}]\n  - route: [{{destination: {{host: web, subset: v1}}}}]\n",
        sidecar(),
        service_at("web", &[(v1.addr, "v1"), (v2.addr, "v2")])
    );
    let proxy = ProxyProc::start(&yaml);
    for target in ["/v2/x", "//v2/x", "/a/../v2/x", "/%76%32/x"] {
        let (raw, _) = raw_exchange(
            proxy.outbound(),
            format!("GET {target} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(statuses(&raw), [200], "{target}: {raw}");
    }
    assert_eq!(v2.paths(), ["/v2/x"; 4]);
    assert_eq!(v1.hits(), 0);
}
