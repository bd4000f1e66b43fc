//! The admin server: readiness, metrics, clusters, config, listeners and
//! what the server runs on.
//!
//! | path | answer |
//! |---|---|
//! | `GET /ready` | 200 `LIVE` once listeners are up, 503 while draining |
//! | `GET /stats/prometheus` | Istio's metrics and per-service counters, Prometheus text |
//! | `GET /clusters` | JSON: each service and subset with its endpoints, health and load |
//! | `GET /config_dump` | JSON: the config in force and its `version` |
//! | `GET /listeners` | JSON: each listener's name and bound address |
//! | `GET /server_info` | JSON, as Envoy's: `version`, `state` (`LIVE` or `DRAINING`), `command_line_options.concurrency` (the runtime's worker threads, as `--threads` set them) and `runtime` (`current_thread` or `multi_thread`) |

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::write_family;
use crate::proxy::Proxy;

/// Serves the admin endpoints on `listener` until the task is aborted: it
/// outlives the drain, so `/ready` can say 503 while requests finish.
pub(crate) async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(&proxy, &req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}

fn json_response(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    respond(StatusCode::OK, "application/json", text)
}

fn handle(proxy: &Proxy, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/ready" => {
            if proxy.is_ready() {
                respond(StatusCode::OK, "text/plain", "LIVE\n")
            } else {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "DRAINING\n")
            }
        }
        "/stats/prometheus" | "/stats" | "/metrics" => {
            let text = proxy.metrics().encode(&cluster_metrics(proxy));
            respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        "/clusters" => {
            let snapshot = proxy.snapshot();
            let clusters: Vec<_> = snapshot
                .clusters
                .values()
                .map(|c| {
                    json!({
                        "name": c.key.name(),
                        "service": c.key.host,
                        "subset": c.key.subset,
                        "port": c.key.port,
                        "endpoints": c.view(),
                    })
                })
                .collect();
            json_response(&json!({ "version": snapshot.version, "clusters": clusters }))
        }
        "/config_dump" => {
            let snapshot = proxy.snapshot();
            json_response(&json!({ "version": snapshot.version, "config": &*snapshot.config }))
        }
        "/listeners" => {
            let listeners: Vec<_> = proxy
                .listeners()
                .into_iter()
                .map(|(name, addr)| json!({ "name": name, "address": addr.to_string() }))
                .collect();
            json_response(&json!({ "listeners": listeners }))
        }
        "/server_info" => json_response(&server_info(proxy)),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /ready /stats/prometheus /clusters /config_dump /listeners /server_info\n",
        ),
    }
}

/// What `/server_info` says: read from the runtime the admin server runs on,
/// which is the proxy's, so it shows what `--threads` made of it.
fn server_info(proxy: &Proxy) -> serde_json::Value {
    let (concurrency, runtime) = match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let flavor = match rt.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
                tokio::runtime::RuntimeFlavor::MultiThread => "multi_thread",
                _ => "other",
            };
            (rt.metrics().num_workers(), flavor)
        }
        Err(_) => (0, "none"),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "state": if proxy.is_ready() { "LIVE" } else { "DRAINING" },
        "command_line_options": { "concurrency": concurrency },
        "runtime": runtime,
    })
}

/// Per-service counters: retries, ejections and pool overflows.
fn cluster_metrics(proxy: &Proxy) -> String {
    let snapshot = proxy.snapshot();
    let mut retries = Vec::new();
    let mut ejections_active = Vec::new();
    let mut ejections_total = Vec::new();
    let mut overflows = Vec::new();
    for c in snapshot.clusters.values() {
        let mut labels = String::new();
        let _ = write!(
            labels,
            "cluster_name=\"{}\",destination_service=\"{}\",destination_subset=\"{}\"",
            c.key.name(),
            c.key.host,
            c.key.subset.as_deref().unwrap_or("")
        );
        if let Some(d) = &c.detector {
            let s = d.stats();
            ejections_active.push((labels.clone(), s.ejections_active as f64));
            ejections_total.push((labels.clone(), s.ejections_total as f64));
        }
        let p = c.pool.stats();
        overflows.push((
            labels.clone(),
            (p.requests_overflow + p.pending_overflow + p.retries_overflow + p.connections_overflow)
                as f64,
        ));
        retries.push((labels, snapshot.retries_for(&c.key) as f64));
    }
    let mut out = String::new();
    write_family(
        &mut out,
        "mesh_upstream_retries",
        "counter",
        "Retries sent to the service",
        &retries,
    );
    write_family(
        &mut out,
        "mesh_outlier_ejections_active",
        "gauge",
        "Endpoints ejected now",
        &ejections_active,
    );
    write_family(
        &mut out,
        "mesh_outlier_ejections",
        "counter",
        "Ejections since start",
        &ejections_total,
    );
    write_family(
        &mut out,
        "mesh_upstream_overflow",
        "counter",
        "Requests refused by pool limits (UO)",
        &overflows,
    );
    out
}
