//! Proxyless retries: a hyper client wrapped in mesh-retry's layer, with an
//! Istio route's `retries` and `timeout`, over two real upstreams of which one
//! always answers 503. Every request succeeds: a failed try is retried on the
//! other endpoint (a tiny picker honours the request context's `tried`, as
//! mesh-lb does).
//!
//! Run with `cargo run -p examples --example retries`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_core::context::{ChosenEndpoint, RequestContext};
use mesh_retry::budget::ConcurrencyBudget;
use mesh_retry::{IstioRetries, RetryBody, RetryLayer, RetryPolicy};
use tower::{Service, ServiceBuilder, ServiceExt};

/// An upstream on 127.0.0.1 that answers every request with `status`.
async fn upstream(status: StatusCode) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let attempt = req.headers().get("x-envoy-attempt-count").cloned();
                    let mut res = Response::new(Full::new(Bytes::from(format!("{status}\n"))));
                    *res.status_mut() = status;
                    if let Some(a) = attempt {
                        res.headers_mut().insert("x-seen-attempt", a);
                    }
                    Ok::<_, hyper::Error>(res)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Round robin over two endpoints, skipping the ones already tried, and
/// telling the retry layer which one it chose (what mesh-lb's balancers do).
#[derive(Clone)]
struct Pick {
    client: Client<HttpConnector, RetryBody<Full<Bytes>>>,
    endpoints: [SocketAddr; 2],
    next: Arc<AtomicUsize>,
}

impl Service<Request<RetryBody<Full<Bytes>>>> for Pick {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Incoming>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<RetryBody<Full<Bytes>>>) -> Self::Future {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let tried = RequestContext::get(req.extensions()).map(|c| &c.tried);
        let pick = (0..2)
            .map(|i| self.endpoints[(start + i) % 2])
            .find(|a| tried.is_none_or(|t| !t.contains(a)))
            .unwrap_or(self.endpoints[start % 2]);
        let client = self.client.clone();
        Box::pin(async move {
            *req.uri_mut() = format!("http://{pick}/reviews").parse()?;
            let mut res = client.request(req).await?;
            res.extensions_mut().insert(ChosenEndpoint(pick));
            Ok(res)
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let bad = upstream(StatusCode::SERVICE_UNAVAILABLE).await?;
    let good = upstream(StatusCode::OK).await?;

    // The route, as an Istio VirtualService would say it:
    //   retries: {attempts: 3, retryOn: "5xx,reset", perTryTimeout: 500ms}
    //   timeout: 2s
    let retries = IstioRetries {
        attempts: Some(3),
        retry_on: Some("5xx,reset".into()),
        per_try_timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let policy = RetryPolicy::from_istio(Some(&retries), Some(Duration::from_secs(2)))?;
    // The destination's retry budget (Istio's trafficPolicy.retryBudget defaults).
    let retry = RetryLayer::new(policy).budget(Arc::new(ConcurrencyBudget::default()));
    let stats = retry.stats();

    let pick = Pick {
        client: Client::builder(TokioExecutor::new()).build_http(),
        endpoints: [bad, good],
        next: Arc::default(),
    };
    let svc = ServiceBuilder::new().layer(retry).service(pick);

    for i in 0..4 {
        let req = Request::post("/reviews").body(Full::new(Bytes::from(format!("review {i}"))))?;
        let res = svc.clone().oneshot(req).await?;
        let attempt = res
            .headers()
            .get("x-seen-attempt")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        println!(
            "request {i}: {status} on attempt {attempt}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    println!("{stats:?}");
    Ok(())
}
