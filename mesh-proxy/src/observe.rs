//! The top of every listener's stack: turns errors into the responses a client
//! sees, assigns `x-request-id`, and when the response body ends writes the
//! access-log line and records Istio's request metrics.

use std::borrow::Cow;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use mesh_core::context::Attempt;
use mesh_core::{BoxError, MeshError, RESPONSE_FLAGS_HEADER, ResponseFlags};
use pin_project_lite::pin_project;
use serde::Serialize;
use tower::Service;

use crate::body::{self, Body, Counted};
use crate::cluster::Upstream;
use crate::metrics::{Metrics, RequestLabels};

/// `x-request-id`.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the layer needs to know about where it runs.
#[derive(Debug)]
pub(crate) struct ObserveConfig {
    pub(crate) metrics: Arc<Metrics>,
    /// `source` for outbound listeners, `destination` for inbound.
    pub(crate) reporter: &'static str,
    /// Whether lines go to stdout.
    pub(crate) access_log: bool,
}

/// Names a request's destination service for metrics, set by the outbound
/// router as a response extension.
#[derive(Clone, Debug)]
pub(crate) struct DestinationService {
    pub(crate) host: Arc<str>,
    pub(crate) name: Arc<str>,
}

/// Whether the connection a request came on was mutual TLS (a request
/// extension set by the listener).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MutualTls(pub(crate) bool);

/// The service wrapper.
#[derive(Clone, Debug)]
pub(crate) struct Observe<S> {
    inner: S,
    config: Arc<ObserveConfig>,
}

impl<S> Observe<S> {
    pub(crate) fn new(inner: S, config: Arc<ObserveConfig>) -> Self {
        Observe { inner, config }
    }
}

struct Entry {
    config: Arc<ObserveConfig>,
    start_time: SystemTime,
    start: Instant,
    method: String,
    path: String,
    authority: String,
    protocol: &'static str,
    request_id: String,
    grpc: bool,
    mtls: bool,
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
    status: u16,
    flags: ResponseFlags,
    upstream: Option<Upstream>,
    destination: Option<DestinationService>,
    attempts: u32,
}

#[derive(Serialize)]
struct Line<'a> {
    start_time: String,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    protocol: &'a str,
    response_code: u16,
    response_flags: String,
    upstream_host: Option<String>,
    upstream_cluster: Option<&'a str>,
    duration_ms: u64,
    attempts: u32,
    bytes_received: u64,
    bytes_sent: u64,
    request_id: &'a str,
}

impl Entry {
    fn finish(&self) {
        let duration = self.start.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let flags = self.flags.to_string();
        let labels = RequestLabels {
            reporter: Cow::Borrowed(self.config.reporter),
            destination_service: self
                .destination
                .as_ref()
                .map_or(Cow::Borrowed("unknown"), |d| Cow::Owned(d.host.to_string())),
            destination_service_name: self
                .destination
                .as_ref()
                .map_or(Cow::Borrowed("unknown"), |d| Cow::Owned(d.name.to_string())),
            destination_version: self
                .upstream
                .as_ref()
                .map_or(Cow::Borrowed("unknown"), |u| {
                    Cow::Owned(u.version.to_string())
                }),
            response_code: self.status,
            response_flags: Cow::Owned(flags.clone()),
            request_protocol: Cow::Borrowed(if self.grpc { "grpc" } else { "http" }),
            connection_security_policy: Cow::Borrowed(
                if self.mtls || self.upstream.as_ref().is_some_and(|u| u.mtls) {
                    "mutual_tls"
                } else {
                    "none"
                },
            ),
        };
        self.config.metrics.record(
            &labels,
            duration.as_secs_f64() * 1000.0,
            bytes_in,
            bytes_out,
        );
        if self.config.access_log {
            let line = Line {
                start_time: humantime::format_rfc3339_millis(self.start_time).to_string(),
                method: &self.method,
                path: &self.path,
                authority: &self.authority,
                protocol: self.protocol,
                response_code: self.status,
                response_flags: flags,
                upstream_host: self.upstream.as_ref().map(|u| u.addr.to_string()),
                upstream_cluster: self.upstream.as_ref().map(|u| &*u.cluster),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                attempts: self.attempts,
                bytes_received: bytes_in,
                bytes_sent: bytes_out,
                request_id: &self.request_id,
            };
            if let Ok(mut text) = serde_json::to_string(&line) {
                text.push('\n');
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
        }
    }
}

/// A random UUID v4, as Envoy generates for `x-request-id`.
fn uuid4() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<LogBody>;
    type Error = std::convert::Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An inner service that failed readiness answers each call with an error
        // response instead (hyper's services are always ready).
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body_in) = req.into_parts();
        let request_id = match parts.headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid4();
                if let Ok(v) = HeaderValue::from_str(&id) {
                    parts.headers.insert(REQUEST_ID, v);
                }
                id
            }
        };
        let bytes_in = Arc::new(AtomicU64::new(0));
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let grpc = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let entry = Entry {
            config: self.config.clone(),
            start_time: SystemTime::now(),
            start: Instant::now(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".into(), |p| p.as_str().to_owned()),
            authority,
            protocol: match parts.version {
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            request_id,
            grpc,
            mtls: parts.extensions.get::<MutualTls>().is_some_and(|m| m.0),
            bytes_in: bytes_in.clone(),
            bytes_out: Arc::new(AtomicU64::new(0)),
            status: 0,
            flags: ResponseFlags::EMPTY,
            upstream: None,
            destination: None,
            attempts: 1,
        };
        let req = Request::from_parts(parts, body::boxed(Counted::new(body_in, bytes_in)));
        ObserveFuture {
            inner: self.inner.call(req),
            entry: Some(entry),
        }
    }
}

pin_project! {
    /// The response future of [`Observe`].
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        entry: Option<Entry>,
    }
}

/// The response for an error: the mesh's own answer when the error is one of
/// its decisions, else 502 (an upstream failure of a kind the mesh does not
/// name).
pub(crate) fn error_response(err: &BoxError) -> Response<Body> {
    match MeshError::find(&**err) {
        Some(mesh) => mesh.to_response::<Bytes>().map(body::full),
        None => {
            tracing::debug!(error = %err, "request failed");
            let mut res = Response::new(body::full(
                "upstream connect error or disconnect/reset before headers",
            ));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            res.headers_mut()
                .insert(RESPONSE_FLAGS_HEADER, HeaderValue::from_static("UR"));
            res.extensions_mut().insert(ResponseFlags::from(
                mesh_core::ResponseFlag::UpstreamRemoteReset,
            ));
            res
        }
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Output = Result<Response<LogBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match ready!(this.inner.poll(cx)) {
            Ok(res) => res,
            Err(err) => error_response(&err),
        };
        let Some(mut entry) = this.entry.take() else {
            return Poll::Ready(Ok(res.map(|b| LogBody {
                inner: Counted::new(b, Arc::default()),
                entry: None,
            })));
        };
        entry.status = res.status().as_u16();
        entry.flags = res
            .extensions()
            .get::<ResponseFlags>()
            .copied()
            .unwrap_or_else(|| {
                res.headers()
                    .get(RESPONSE_FLAGS_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default()
            });
        entry.upstream = res.extensions().get::<Upstream>().cloned();
        entry.destination = res.extensions().get::<DestinationService>().cloned();
        entry.attempts = res.extensions().get::<Attempt>().map_or(1, |a| a.get());
        let count = entry.bytes_out.clone();
        Poll::Ready(Ok(res.map(|b| LogBody {
            inner: Counted::new(b, count),
            entry: Some(entry),
        })))
    }
}

pin_project! {
    /// The response body; when it ends (or is dropped) the request is logged
    /// and counted.
    pub(crate) struct LogBody {
        #[pin]
        inner: Counted<Body>,
        entry: Option<Entry>,
    }

    impl PinnedDrop for LogBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(entry) = this.project().entry.take() {
                entry.finish();
            }
        }
    }
}

impl http_body::Body for LogBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none()
            && let Some(entry) = this.entry.take()
        {
            entry.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(uuid4(), id);
    }
}
