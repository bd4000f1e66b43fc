//! The proxy in operation: hot reload under load, and draining on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{
    Backend, Behavior, Client, ProxyProc, RawBackend, Reply, service, service_at, sidecar,
};

fn routes_to(subset: &str, a: &Backend, b: &Backend) -> String {
    format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web, subset: {subset}}}}}]\n",
        sidecar(),
        service("web", &[(a, "v1"), (b, "v2")])
    )
}

/// How many config versions the reload test puts in force under load.
const RELOADS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_under_load_fail_no_request() {
    let a = Backend::start("v1", Behavior::Ok).await;
    let b = Backend::start("v2", Behavior::Ok).await;
    let proxy = ProxyProc::start(&routes_to("v1", &a, &b));
    assert_eq!(proxy.version().await, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, failures, sent, seen) =
            (stop.clone(), failures.clone(), sent.clone(), seen.clone());
        let addr = proxy.outbound();
        load.push(tokio::spawn(async move {
            let client = Client::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, _, body) = client.get(addr, "web", "/", &[]).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                seen.lock().unwrap().insert(body);
            }
        }));
    }

    // Rewrite (in place, or by rename every fourth time) and SIGHUP: the
    // proxy reloads at once, without the polling debounce. (The file poll
    // may also see a change and add a version: count, don't predict.)
    let started = Instant::now();
    let mut in_force = 1;
    for i in 1..=RELOADS {
        let subset = if i % 2 == 1 { "v2" } else { "v1" };
        if i % 4 == 0 {
            let tmp = proxy.config_path.with_extension("tmp");
            std::fs::write(&tmp, routes_to(subset, &a, &b)).unwrap();
            std::fs::rename(&tmp, &proxy.config_path).unwrap();
        } else {
            std::fs::write(&proxy.config_path, routes_to(subset, &a, &b)).unwrap();
        }
        proxy.signal_reload();
        in_force = proxy.wait_version(in_force + 1).await;
    }
    let reload_time = started.elapsed();
    assert!(in_force > RELOADS, "only {in_force} versions");
    assert!(
        reload_time < Duration::from_secs(60),
        "{RELOADS} reloads took {reload_time:?}"
    );

    // An invalid config is refused with its position; the version stays.
    std::fs::write(&proxy.config_path, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: [web]\n  htp: []\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("mesh.yaml:6:3: VirtualService web: unknown field `htp`"))
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            proxy.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.version().await, in_force);

    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 200, "load was running: {sent}");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request of {sent} failed across {in_force} versions"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains("v1") && seen.contains("v2"),
        "routes changed: {seen:?}"
    );
    // The last valid version routes to v1.
    let (_, _, body) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
    assert_eq!(body, "v1");
    eprintln!("{in_force} versions in {reload_time:?} under {sent} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let slow = Backend::start("slow", Behavior::Delay(Duration::from_millis(700))).await;
    let mut proxy = ProxyProc::start(&format!(
        "{}{}",
        sidecar(),
        service("web", &[(&slow, "v1")])
    ));
    let client = Client::new();
    let addr = proxy.outbound();
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        in_flight.push(tokio::spawn(async move {
            client.try_get(addr, "web", "/").await
        }));
    }
    // Let them all reach the backend, then ask the proxy to stop.
    support::wait_until("the 8 requests reached the backend", || slow.hits() >= 8).await;
    let admin = proxy.admin;
    let pid = proxy.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // While draining, readiness says so.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ready, _, _) = client.get(admin, "admin", "/ready", &[]).await;
    assert_eq!(ready, 503);
    for r in in_flight {
        let result = r.await.unwrap();
        let stderr = proxy.stderr.lock().unwrap().clone();
        let (status, body) = result.unwrap_or_else(|e| {
            panic!("an in-flight request was lost: {e}; proxy said {stderr:?}")
        });
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "slow"),
            "in-flight requests finish"
        );
    }
    let status = proxy.terminate();
    assert!(status.success(), "exit 0 after draining: {status:?}");
    assert!(
        proxy
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("draining"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_outlier_state_of_endpoints_that_stay() {
    let good = Backend::start("good", Behavior::Ok).await;
    let bad = Backend::start("bad", Behavior::Status(503)).await;
    let config = |timeout: &str| {
        format!(
            "{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    retries: {{attempts: 0}}\n    timeout: {timeout}\n",
            sidecar(),
            service("web", &[(&good, "v1"), (&bad, "v1")])
        )
    };
    let proxy = ProxyProc::start(&config("5s"));
    let client = Client::new();
    for _ in 0..6 {
        client.get(proxy.outbound(), "web", "/", &[]).await;
    }
    let ejected = |clusters: &serde_json::Value| -> Vec<(String, bool, u64)> {
        clusters["clusters"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["address"].as_str().unwrap().to_owned(),
                    e["ejected"].as_bool().unwrap(),
                    e["ejections_total"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let before = ejected(&proxy.admin_json("/clusters").await);
    assert!(
        before.contains(&(bad.addr.to_string(), true, 1)),
        "{before:?}"
    );

    // A new version that changes the route, not the endpoints' policy.
    std::fs::write(&proxy.config_path, config("6s")).unwrap();
    proxy.wait_version(2).await;
    let after = ejected(&proxy.admin_json("/clusters").await);
    assert_eq!(after, before, "ejections survive the reload");
    for _ in 0..10 {
        let (status, _, body) = client.get(proxy.outbound(), "web", "/", &[]).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "good"),
            "the bad endpoint stays ejected"
        );
    }
}

/// A proxy in front of `backend` with this route policy.
fn raw_route(backend: &RawBackend, policy: &str) -> ProxyProc {
    ProxyProc::start(&format!(
        "{}{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    timeout: 5s\n{policy}",
        sidecar(),
        service_at("web", &[(backend.addr, "v1")])
    ))
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// Half a response head, then the upstream closes.
const HALF_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Len";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_mid_request_is_retried_for_a_get() {
    let backend = RawBackend::start(
        vec![Reply::Close, Reply::SendAndClose(HALF_HEAD)],
        Reply::Send(OK),
    )
    .await;
    let proxy = raw_route(
        &backend,
        "    retries: {attempts: 3, perTryTimeout: 1s, retryOn: reset}\n",
    );
    let started = Instant::now();
    let (status, headers, body) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"), "{headers:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Three attempts: closed, half a head, then the answer.
    assert_eq!(backend.heads(), 3);
    let log = proxy.access_log_n(1).await;
    assert_eq!(log[0]["response_code"], 200, "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_mid_request_without_retries_is_a_prompt_503_uc() {
    for script in [Reply::Close, Reply::SendAndClose(HALF_HEAD)] {
        let backend = RawBackend::start(vec![script.clone()], Reply::Send(OK)).await;
        let proxy = raw_route(&backend, "    retries: {attempts: 0}\n");
        let started = Instant::now();
        let (status, headers, _) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
        assert_eq!(status, 503, "{script:?}");
        assert_eq!(headers["x-mesh-response-flags"], "UC", "{script:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{script:?}");
        assert_eq!(backend.heads(), 1, "{script:?}: retried without a policy");
        // The next request is served.
        let (status, _, body) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_always_dies_exhausts_retries_promptly() {
    let backend = RawBackend::start(vec![], Reply::Close).await;
    let proxy = raw_route(
        &backend,
        "    retries: {attempts: 2, perTryTimeout: 1s, retryOn: reset}\n",
    );
    let started = Instant::now();
    let (status, headers, _) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
    assert_eq!(status, 503);
    let flags = headers["x-mesh-response-flags"].to_str().unwrap();
    assert!(flags.contains("UC"), "{flags}");
    // One try and two retries, then the last failure, well inside the route
    // timeout (5 s): never a hang.
    assert_eq!(backend.heads(), 3);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// `--threads` sets the runtime the proxy serves on: one worker is a
/// current-thread runtime, more a multi-thread one with that many workers,
/// and none given means one per CPU. `/server_info` reads the runtime itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threads_flag_sets_the_runtime() {
    let backend = Backend::start("v1", Behavior::Ok).await;
    let yaml = format!("{}{}", sidecar(), service("web", &[(&backend, "v1")]));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (flag, workers, runtime) in [
        (Some("1"), 1, "current_thread"),
        (Some("3"), 3, "multi_thread"),
        (
            None,
            cpus,
            if cpus == 1 {
                "current_thread"
            } else {
                "multi_thread"
            },
        ),
    ] {
        let proxy = match flag {
            Some(n) => ProxyProc::start_with(&yaml, &["--threads", n]),
            // No flag at all (the tests' own default is two).
            None => ProxyProc::start_exactly(&yaml, &[]),
        };
        let info = proxy.admin_json("/server_info").await;
        assert_eq!(
            info["command_line_options"]["concurrency"], workers,
            "{flag:?}"
        );
        assert_eq!(info["runtime"], runtime, "{flag:?}");
        assert_eq!(info["state"], "LIVE");
        // And it proxies on that runtime.
        let (status, _, _) = Client::new().get(proxy.outbound(), "web", "/", &[]).await;
        assert_eq!(status, 200, "{flag:?}");
    }
}
