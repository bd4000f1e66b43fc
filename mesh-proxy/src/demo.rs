//! `mesh-proxy demo`: the whole mesh on one machine in ten seconds.
//!
//! A dev CA is made in memory and issues two identities. Three versions of a
//! `reviews` app start — v1 healthy, v2 failing about 30% of requests with
//! 503, v3 slow — behind one inbound sidecar that requires mTLS (STRICT).
//! Clients call through an outbound sidecar whose VirtualService splits
//! traffic 90/10 between the live pool (v1 and v2) and the v3 canary and
//! sends `end-user: jason` to v3, over ISTIO_MUTUAL. Traffic runs twice, about five seconds each: first
//! through a sidecar with no resilience policy, then through one whose
//! DestinationRule adds least request, retries and outlier detection. A table
//! shows what each endpoint saw and what the clients saw.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_tls::{CredentialStore, Credentials, DevCa, SpiffeId};
use tokio::net::TcpListener;

use crate::config;
use crate::run::{Running, StartOptions, start};

const CLIENTS: usize = 8;

/// What one app version saw.
#[derive(Default)]
struct AppStats {
    requests: AtomicU64,
    failures: AtomicU64,
}

/// Starts a `reviews` app version: `fail_every` > 0 fails that share of
/// requests with 503 (deterministically, every n-th of ten), `delay` slows
/// every answer.
async fn app(
    version: &'static str,
    fail_tenths: u64,
    delay: Duration,
) -> Result<(SocketAddr, Arc<AppStats>), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(AppStats::default());
    let s = stats.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let n = s.requests.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(delay).await;
                        let fail = n % 10 < fail_tenths;
                        if fail {
                            s.failures.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut res =
                            Response::new(Full::new(Bytes::from(format!("reviews {version}\n"))));
                        res.headers_mut()
                            .insert("x-version", http::HeaderValue::from_static(version));
                        if fail {
                            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, stats))
}

fn identity(ca: &DevCa, id: &str) -> Result<CredentialStore, BoxError> {
    let id: SpiffeId = id.parse()?;
    let cert = ca.issue(&id, mesh_tls::DEFAULT_WORKLOAD_TTL)?;
    let creds = Credentials::from_pem(
        ca.cert_pem().as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )?;
    Ok(CredentialStore::new(creds))
}

/// A sidecar on ephemeral ports with no access log (the demo prints a table).
fn quiet(identity: Option<CredentialStore>) -> Result<StartOptions, BoxError> {
    Ok(StartOptions {
        identity,
        access_log: false,
        ..StartOptions::new("127.0.0.1:0".parse()?)
    })
}

fn load(name: &str, yaml: &str) -> Result<config::Config, BoxError> {
    let loaded = config::load_str(Path::new(name), yaml);
    match loaded.config {
        Some(c) => Ok(c),
        None => {
            let errors: Vec<String> = loaded.errors().map(ToString::to_string).collect();
            Err(errors.join("\n").into())
        }
    }
}

fn server_yaml(apps: &[(&str, SocketAddr)]) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: reviews}\nspec:\n  ingress:\n",
    );
    for (version, addr) in apps {
        y.push_str(&format!(
            "  - port: {{number: 0, name: {version}}}\n    defaultEndpoint: {addr}\n"
        ));
    }
    y.push_str("---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n");
    y
}

fn client_yaml(inbound: &[(String, SocketAddr)], policies: bool) -> String {
    let mut y = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: productpage}\nspec:\n  egress:\n  - port: {number: 0, name: http}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n",
    );
    for (name, addr) in inbound {
        let version = name.trim_start_matches("inbound|");
        // v1 and v2 serve the live pool; v3 is the canary.
        let pool = if version == "v3" { "canary" } else { "live" };
        y.push_str(&format!(
            "  - address: {}\n    ports: {{http: {}}}\n    labels: {{version: {version}, pool: {pool}}}\n",
            addr.ip(),
            addr.port()
        ));
    }
    let (lb, outlier, retries) = if policies {
        (
            "    loadBalancer: {simple: LEAST_REQUEST}\n",
            "    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 50}\n",
            "    retries: {attempts: 2, retryOn: \"5xx,connect-failure\", perTryTimeout: 1s}\n",
        )
    } else {
        (
            "    loadBalancer: {simple: ROUND_ROBIN}\n",
            "",
            "    retries: {attempts: 0}\n",
        )
    };
    y.push_str(&format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/default/sa/reviews]}}\n{lb}{outlier}  subsets:\n  - {{name: live, labels: {{pool: live}}}}\n  - {{name: v3, labels: {{version: v3}}}}\n"
    ));
    y.push_str(&format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - name: jason\n    match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n    route: [{{destination: {{host: reviews, subset: v3}}}}]\n    timeout: 3s\n{retries}  - name: canary\n    route:\n    - {{destination: {{host: reviews, subset: live}}, weight: 90}}\n    - {{destination: {{host: reviews, subset: v3}}, weight: 10}}\n    timeout: 3s\n{retries}"
    ));
    y
}

/// What the clients of one phase saw.
#[derive(Default)]
struct Seen {
    total: u64,
    ok: u64,
    /// Latencies in microseconds, by the version that answered.
    latency: BTreeMap<String, Vec<u64>>,
}

async fn drive(outbound: SocketAddr, label: &str, length: Duration) -> Seen {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deadline = Instant::now() + length;
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let client = client.clone();
        let seen = seen.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let mut req = Request::builder()
                    .uri(format!("http://{outbound}/reviews/{n}"))
                    .header("host", "reviews");
                if (n + w as u64).is_multiple_of(10) {
                    req = req.header("end-user", "jason");
                }
                let Ok(req) = req.body(Empty::new()) else {
                    continue;
                };
                let start = Instant::now();
                let result = client.request(req).await;
                let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                let (ok, version, body) = match result {
                    Ok(res) => {
                        let version = res
                            .headers()
                            .get("x-version")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("(proxy)")
                            .to_owned();
                        (
                            res.status().is_success(),
                            Some(version),
                            Some(res.into_body()),
                        )
                    }
                    Err(_) => (false, None, None),
                };
                {
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    s.total += 1;
                    s.ok += u64::from(ok);
                    if let Some(v) = version {
                        s.latency.entry(v).or_default().push(micros);
                    }
                }
                if let Some(body) = body {
                    let _ = body.collect().await;
                }
            }
        }));
    }
    let progress = {
        let seen = seen.clone();
        let label = label.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (total, ok) = {
                    let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    (s.total, s.ok)
                };
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64();
                eprint!(
                    "\r  {label:<28} {total:>6} requests, {:>5.1}% ok, {left:>3.1}s left   ",
                    pct(ok, total)
                );
                let _ = std::io::stderr().flush();
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    eprintln!();
    std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner))
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn quantile(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    format!("{:.1}ms", sorted[i.min(sorted.len() - 1)] as f64 / 1000.0)
}

struct Phase {
    seen: Seen,
    app: Vec<(u64, u64)>,
    ejections: BTreeMap<String, u64>,
    retries: u64,
}

fn report(name: &str, p: &mut Phase) {
    println!("{name}");
    println!(
        "  {:<10} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "endpoint", "requests", "app 503s", "ejections", "p50", "p99"
    );
    for (i, version) in ["v1", "v2", "v3"].iter().enumerate() {
        let lat = p.seen.latency.entry((*version).to_owned()).or_default();
        lat.sort_unstable();
        let (requests, failures) = p.app[i];
        println!(
            "  {:<10} {:>9} {:>10} {:>10} {:>10} {:>10}",
            format!("reviews-{version}"),
            requests,
            failures,
            p.ejections.get(*version).copied().unwrap_or(0),
            quantile(lat, 0.5),
            quantile(lat, 0.99)
        );
    }
    println!(
        "  clients: {} requests, {} succeeded ({:.1}%), {} retries by the sidecar\n",
        p.seen.total,
        p.seen.ok,
        pct(p.seen.ok, p.seen.total),
        p.retries
    );
}

async fn phase(
    label: &str,
    inbound: &[(String, SocketAddr)],
    policies: bool,
    web: &CredentialStore,
    apps: &[Arc<AppStats>],
    length: Duration,
) -> Result<(Phase, Running), BoxError> {
    let before: Vec<(u64, u64)> = apps
        .iter()
        .map(|a| {
            (
                a.requests.load(Ordering::Relaxed),
                a.failures.load(Ordering::Relaxed),
            )
        })
        .collect();
    let client = start(
        load("client.yaml", &client_yaml(inbound, policies))?,
        quiet(Some(web.clone()))?,
    )
    .await?;
    let outbound = client
        .listener("outbound")
        .ok_or("the client sidecar has no outbound listener")?;
    let seen = drive(outbound, label, length).await;
    let snapshot = client.proxy().snapshot();
    let mut ejections = BTreeMap::new();
    let mut retries = 0;
    for c in snapshot.clusters.values() {
        retries += snapshot.retries_for(&c.key);
        for ep in c.view() {
            if let Some(version) = ep.labels.get("version") {
                *ejections.entry(version.clone()).or_insert(0) += ep.ejections_total;
            }
        }
    }
    let app = apps
        .iter()
        .zip(before)
        .map(|(a, (r, f))| {
            (
                a.requests.load(Ordering::Relaxed) - r,
                a.failures.load(Ordering::Relaxed) - f,
            )
        })
        .collect();
    Ok((
        Phase {
            seen,
            app,
            ejections,
            retries,
        },
        client,
    ))
}

/// Runs the demo, each of its two phases for `phase`; with `keep_running`,
/// leaves the sidecars up until Ctrl-C.
pub async fn demo(phase_length: Duration, keep_running: bool) -> Result<(), BoxError> {
    eprintln!(
        "mesh-proxy demo: a dev CA, three versions of `reviews` behind an mTLS (STRICT) sidecar, and a client sidecar in front."
    );
    let ca = DevCa::new(mesh_tls::DEFAULT_TRUST_DOMAIN)?;
    let web = identity(&ca, "spiffe://cluster.local/ns/default/sa/productpage")?;
    let reviews = identity(&ca, "spiffe://cluster.local/ns/default/sa/reviews")?;

    let (v1, s1) = app("v1", 0, Duration::from_millis(2)).await?;
    let (v2, s2) = app("v2", 3, Duration::from_millis(2)).await?;
    let (v3, s3) = app("v3", 0, Duration::from_millis(40)).await?;
    let apps = [s1, s2, s3];
    let server = start(
        load(
            "server.yaml",
            &server_yaml(&[("v1", v1), ("v2", v2), ("v3", v3)]),
        )?,
        quiet(Some(reviews))?,
    )
    .await?;
    let mut inbound = server.listeners.clone();
    inbound.sort();

    eprintln!(
        "Driving {CLIENTS} clients for {}s per phase: 90% to the live pool (v1, v2), 10% to the v3 canary, end-user: jason -> v3.",
        phase_length.as_secs_f64()
    );
    let (mut plain, plain_proxy) = phase(
        "without resilience policies",
        &inbound,
        false,
        &web,
        &apps,
        phase_length,
    )
    .await?;
    plain_proxy.shutdown(Duration::from_secs(1)).await;
    let (mut meshed, meshed_proxy) = phase(
        "with retries + outlier ejection",
        &inbound,
        true,
        &web,
        &apps,
        phase_length,
    )
    .await?;

    println!();
    report(
        "Without resilience policies (round robin, no retries, no outlier detection):",
        &mut plain,
    );
    report(
        "With the mesh's policies (least request, retries on 5xx, outlier detection):",
        &mut meshed,
    );
    println!(
        "v2 fails 30% of its requests. Without policies clients saw {:.1}% success; with retries and outlier ejection, {:.1}%.",
        pct(plain.seen.ok, plain.seen.total),
        pct(meshed.seen.ok, meshed.seen.total)
    );
    println!(
        "Every hop between the sidecars was mutual TLS with SPIFFE identities from an in-memory dev CA."
    );

    if keep_running {
        let outbound = meshed_proxy
            .listener("outbound")
            .ok_or("no outbound listener")?;
        println!("\nStill running. Try:");
        println!("  curl -H 'Host: reviews' http://{outbound}/");
        println!(
            "  curl http://{}/clusters      (client sidecar admin)",
            meshed_proxy.admin
        );
        println!("  curl http://{}/stats/prometheus", meshed_proxy.admin);
        println!(
            "  curl http://{}/stats/prometheus   (server sidecar admin)",
            server.admin
        );
        println!("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    meshed_proxy.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
