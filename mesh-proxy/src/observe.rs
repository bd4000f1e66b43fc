//! The top of every listener's stack: turns errors into the responses a client
//! sees, assigns `x-request-id`, and when the response body ends writes the
//! access-log line and records Istio's request metrics.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use mesh_core::context::{Attempt, PeerIdentity};
use mesh_core::{BoxError, MeshError, RESPONSE_FLAGS_HEADER, ResponseFlags};
use pin_project_lite::pin_project;
use tower::Service;

use crate::access_log::AccessLog;
use crate::body::{self, Body, Counted};
use crate::cluster::Upstream;
use crate::metrics::{LabelKey, Metrics};

/// `x-request-id`.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the layer needs to know about where it runs.
#[derive(Debug)]
pub(crate) struct ObserveConfig {
    pub(crate) metrics: Arc<Metrics>,
    /// `source` for outbound listeners, `destination` for inbound.
    pub(crate) reporter: &'static str,
    /// Where access-log lines go (`None`: no access log).
    pub(crate) access_log: Option<Arc<AccessLog>>,
}

/// Names a request's destination service for metrics: its cluster's, in
/// the response's [`Upstream`] extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DestinationService {
    pub(crate) host: Arc<str>,
    pub(crate) name: Arc<str>,
}

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
    method: Method,
    /// The request's path, authority and id for the log line, in one buffer.
    texts: Texts,
    protocol: &'static str,
    grpc: bool,
    mtls: bool,
    /// Counted by the request body, which the upstream side owns.
    bytes_in: Arc<AtomicU64>,
    /// Counted by the [`LogBody`] that owns this entry.
    bytes_out: u64,
    status: u16,
    flags: ResponseFlags,
    upstream: Option<Upstream>,
    attempts: u32,
}

/// A request's path, authority and id, copied into one buffer for its log
/// line: one small allocation, where clones of the parsed values cost an
/// atomic pair each (and the generated id an allocation of its own), and
/// kept slices of the connection's read buffer referenced until the line is
/// written.
struct Texts {
    buf: String,
    path_end: usize,
    authority_end: usize,
}

impl Texts {
    /// `path` (`/` when the request has none), the authority (the URI's,
    /// else the `Host` header, else empty) and `request_id`.
    fn new(parts: &http::request::Parts, request_id: &str) -> Texts {
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let authority = match parts.uri.authority() {
            Some(a) => a.as_str(),
            None => parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default(),
        };
        let mut buf = String::with_capacity(path.len() + authority.len() + request_id.len());
        buf.push_str(path);
        let path_end = buf.len();
        buf.push_str(authority);
        let authority_end = buf.len();
        buf.push_str(request_id);
        Texts {
            buf,
            path_end,
            authority_end,
        }
    }

    fn path(&self) -> &str {
        self.buf.get(..self.path_end).unwrap_or_default()
    }

    fn authority(&self) -> &str {
        self.buf
            .get(self.path_end..self.authority_end)
            .unwrap_or_default()
    }

    fn request_id(&self) -> &str {
        self.buf.get(self.authority_end..).unwrap_or_default()
    }
}

/// One access-log line: Envoy's fields as JSON, in this order.
struct Line<'a> {
    start_time: SystemTime,
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    protocol: &'a str,
    response_code: u16,
    response_flags: ResponseFlags,
    upstream_host: Option<SocketAddr>,
    upstream_cluster: Option<&'a str>,
    duration_ms: u64,
    attempts: u32,
    bytes_received: u64,
    bytes_sent: u64,
    request_id: &'a str,
}

impl Line<'_> {
    /// Appends the line as one JSON object, byte for byte what
    /// `serde_json::to_writer` wrote for a struct of these fields with the
    /// times, flags and address as their `Display` strings.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"start_time\":");
        json_rfc3339_millis(out, self.start_time);
        out.extend_from_slice(b",\"method\":");
        json_str(out, self.method);
        out.extend_from_slice(b",\"path\":");
        json_str(out, self.path);
        out.extend_from_slice(b",\"authority\":");
        json_str(out, self.authority);
        out.extend_from_slice(b",\"protocol\":");
        json_str(out, self.protocol);
        out.extend_from_slice(b",\"response_code\":");
        json_u64(out, u64::from(self.response_code));
        out.extend_from_slice(b",\"response_flags\":");
        if self.response_flags.is_empty() {
            out.extend_from_slice(b"\"-\"");
        } else {
            json_display(out, self.response_flags);
        }
        out.extend_from_slice(b",\"upstream_host\":");
        match self.upstream_host {
            Some(SocketAddr::V4(addr)) => {
                // What `SocketAddrV4`'s `Display` writes, without `fmt`.
                out.push(b'"');
                for (i, octet) in addr.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    json_u64(out, u64::from(octet));
                }
                out.push(b':');
                json_u64(out, u64::from(addr.port()));
                out.push(b'"');
            }
            Some(addr) => json_display(out, addr),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"upstream_cluster\":");
        match self.upstream_cluster {
            Some(cluster) => json_str(out, cluster),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"duration_ms\":");
        json_u64(out, self.duration_ms);
        out.extend_from_slice(b",\"attempts\":");
        json_u64(out, u64::from(self.attempts));
        out.extend_from_slice(b",\"bytes_received\":");
        json_u64(out, self.bytes_received);
        out.extend_from_slice(b",\"bytes_sent\":");
        json_u64(out, self.bytes_sent);
        out.extend_from_slice(b",\"request_id\":");
        json_str(out, self.request_id);
        out.push(b'}');
    }
}

/// Whether serde_json escapes this byte inside a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string, escaped as serde_json does: `\"`, `\\`,
/// `\b \f \n \r \t`, other control bytes as `\u00xx`, everything else
/// (non-ASCII included) as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    json_str_contents(out, s.as_bytes());
    out.push(b'"');
}

/// Whether any of the eight bytes in `word` is one serde_json escapes (a
/// control byte, `"` or `\\`): the has-less-than and has-zero-byte bit tricks,
/// exact for "any".
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

fn json_str_contents(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Almost every string needs no escape: checked a word at a time, copied
    // at once.
    if !any_needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte of `bytes` is one serde_json escapes: eight at a time,
/// the last few padded with spaces (which need none).
fn any_needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    word_needs_escape(u64::from_le_bytes(word))
}

/// Appends `time` as a JSON string in RFC 3339 with milliseconds, UTC
/// (`"2026-11-29T02:30:04.123Z"`, what `humantime::format_rfc3339_millis`
/// writes), without the formatting machinery: a line per request.
fn json_rfc3339_millis(out: &mut Vec<u8>, time: SystemTime) {
    let Ok(since) = time.duration_since(SystemTime::UNIX_EPOCH) else {
        return json_display(out, humantime::format_rfc3339_millis(time));
    };
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return json_display(out, humantime::format_rfc3339_millis(time));
    }
    let of_day = secs % 86_400;
    let two = |out: &mut Vec<u8>, n: u64| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    out.push(b'"');
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, of_day / 3600);
    out.push(b':');
    two(out, of_day / 60 % 60);
    out.push(b':');
    two(out, of_day % 60);
    let millis = u64::from(since.subsec_millis());
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
        b'"',
    ]);
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends `value`'s `Display` text as a JSON string.
fn json_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    out.push(b'"');
    let start = out.len();
    if write!(out, "{value}").is_err() {
        out.truncate(start);
    }
    if out[start..].iter().any(|&b| needs_escape(b)) {
        let text = out.split_off(start);
        json_str_contents(out, &text);
    }
    out.push(b'"');
}

/// Appends `n` in decimal.
fn json_u64(out: &mut Vec<u8>, mut n: u64) {
    // Most numbers of a line (attempts, octets, short durations) are one
    // or two digits: pushed, not copied.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// One proxied TCP connection, for the access log.
#[derive(Debug)]
pub(crate) struct TcpLog<'a> {
    pub(crate) start_time: SystemTime,
    pub(crate) started: Instant,
    /// Where the client was connecting (its original destination).
    pub(crate) destination: SocketAddr,
    pub(crate) upstream_host: Option<SocketAddr>,
    pub(crate) upstream_cluster: Option<&'a str>,
    /// `UF` when no upstream connection could be made.
    pub(crate) flags: ResponseFlags,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
}

/// Writes a TCP connection's line: the access log's fields, with `-` for
/// the HTTP ones (as Envoy's default format does) and `TCP` as protocol.
pub(crate) fn log_tcp(log: &AccessLog, conn: &TcpLog<'_>) {
    let authority = conn.destination.to_string();
    let line = Line {
        start_time: conn.start_time,
        method: "-",
        path: "-",
        authority: &authority,
        protocol: "TCP",
        response_code: 0,
        response_flags: conn.flags,
        upstream_host: conn.upstream_host,
        upstream_cluster: conn.upstream_cluster,
        duration_ms: u64::try_from(conn.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        attempts: 1,
        bytes_received: conn.bytes_received,
        bytes_sent: conn.bytes_sent,
        request_id: "-",
    };
    log.append(|buf| line.write_json(buf));
}

impl Entry {
    fn finish(self) {
        let duration = self.start.elapsed();
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out;
        let key = LabelKey {
            reporter: self.config.reporter,
            destination: self
                .upstream
                .as_ref()
                .map(|u| (&u.destination.host, &u.destination.name)),
            version: self.upstream.as_ref().map(|u| &u.version),
            response_code: self.status,
            response_flags: self.flags,
            grpc: self.grpc,
            mtls: self.mtls || self.upstream.as_ref().is_some_and(|u| u.mtls),
        };
        self.config
            .metrics
            .record_key(&key, duration.as_secs_f64() * 1000.0, bytes_in, bytes_out);
        if let Some(log) = &self.config.access_log {
            let line = Line {
                start_time: self.start_time,
                method: self.method.as_str(),
                path: self.texts.path(),
                authority: self.texts.authority(),
                protocol: self.protocol,
                response_code: self.status,
                response_flags: self.flags,
                upstream_host: self.upstream.as_ref().map(|u| u.addr),
                upstream_cluster: self.upstream.as_ref().map(|u| &*u.cluster),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                attempts: self.attempts,
                bytes_received: bytes_in,
                bytes_sent: bytes_out,
                request_id: self.texts.request_id(),
            };
            log.append(|buf| line.write_json(buf));
        }
    }
}

/// A random UUID v4, as Envoy generates for `x-request-id`.
fn uuid4() -> [u8; 36] {
    uuid4_from(rand::random(), rand::random())
}

/// The UUID v4 text of 128 random bits (ASCII).
fn uuid4_from(a: u64, b: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    // 8-4-4-4-12 hex digits: `a` gives the first 16, `b` the last 16.
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, word) in [a, b].into_iter().enumerate() {
        for digit in 0..16 {
            if matches!(i * 16 + digit, 8 | 12 | 16 | 20) {
                at += 1; // the dash already there
            }
            let nibble = (word >> (60 - 4 * digit)) & 0xf;
            out[at] = HEX[nibble as usize];
            at += 1;
        }
    }
    out
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
        let generated;
        let request_id = match parts.headers.get(&REQUEST_ID).map(HeaderValue::to_str) {
            Some(Ok(id)) => id,
            _ => {
                generated = uuid4();
                let id = HeaderValue::from_bytes(&generated)
                    .unwrap_or_else(|_| HeaderValue::from_static(""));
                parts.headers.insert(REQUEST_ID, id);
                std::str::from_utf8(&generated).unwrap_or_default()
            }
        };
        let texts = Texts::new(&parts, request_id);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let grpc = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let entry = Entry {
            config: self.config.clone(),
            start_time: SystemTime::now(),
            start: Instant::now(),
            method: parts.method.clone(),
            texts,
            protocol: match parts.version {
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            grpc,
            mtls: parts.extensions.get::<PeerIdentity>().is_some(),
            bytes_in: bytes_in.clone(),
            bytes_out: 0,
            status: 0,
            flags: ResponseFlags::EMPTY,
            upstream: None,
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
        let mut res = match ready!(this.inner.poll(cx)) {
            Ok(res) => res,
            Err(err) => error_response(&err),
        };
        let Some(mut entry) = this.entry.take() else {
            return Poll::Ready(Ok(res.map(|b| LogBody {
                inner: b,
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
        // Taken rather than cloned: nothing after this layer reads it.
        entry.upstream = res.extensions_mut().remove::<Upstream>();
        entry.attempts = res.extensions().get::<Attempt>().map_or(1, |a| a.get());
        Poll::Ready(Ok(res.map(|b| LogBody {
            inner: b,
            entry: Some(entry),
        })))
    }
}

pin_project! {
    /// The response body; when it ends (or is dropped) the request is logged
    /// and counted.
    pub(crate) struct LogBody {
        #[pin]
        inner: Body,
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
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(entry)) = (f.data_ref(), this.entry.as_mut()) {
                    entry.bytes_out += data.len() as u64;
                }
            }
            Some(Err(_)) => {}
            None => {
                if let Some(entry) = this.entry.take() {
                    entry.finish();
                }
            }
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

    proptest::proptest! {
        /// The same text as humantime's, from 1970 to 9999.
        #[test]
        fn timestamps_as_humantime_writes_them(millis in 0u64..253_402_300_799_999) {
            let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(millis);
            let mut ours = Vec::new();
            json_rfc3339_millis(&mut ours, time);
            let theirs = format!("\"{}\"", humantime::format_rfc3339_millis(time));
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }

    proptest::proptest! {
        /// Numbers as `Display` writes them, small ones most often.
        #[test]
        fn numbers_as_display_writes_them(n in proptest::prop_oneof![0u64..1000, proptest::num::u64::ANY]) {
            let mut ours = Vec::new();
            json_u64(&mut ours, n);
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), n.to_string());
        }

        /// Strings escaped as serde_json escapes them, control bytes, quotes,
        /// backslashes and non-ASCII included, at every length.
        #[test]
        fn strings_as_serde_json_writes_them(s in "[\\x00-\\x7f\"\\\\é€]{0,40}") {
            let mut ours = Vec::new();
            json_str(&mut ours, &s);
            let theirs = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
    }

    #[test]
    fn log_texts_come_from_the_uri_else_the_host_header() {
        let texts = |req: Request<()>, id: &str| {
            let t = Texts::new(&req.into_parts().0, id);
            (
                t.path().to_owned(),
                t.authority().to_owned(),
                t.request_id().to_owned(),
            )
        };
        let origin = Request::get("/a/b?c=d").header("host", "reviews:9080");
        assert_eq!(
            texts(origin.body(()).unwrap(), "id-1"),
            ("/a/b?c=d".into(), "reviews:9080".into(), "id-1".into())
        );
        let absolute = Request::get("http://ratings:9080/x").header("host", "other");
        assert_eq!(
            texts(absolute.body(()).unwrap(), ""),
            ("/x".into(), "ratings:9080".into(), String::new())
        );
        let connect = Request::connect("db:5432").body(()).unwrap();
        assert_eq!(
            texts(connect, "é"),
            ("/".into(), "db:5432".into(), "é".into())
        );
        let bad_host = Request::get("/").header("host", &b"\xff"[..]);
        assert_eq!(
            texts(bad_host.body(()).unwrap(), "x"),
            ("/".into(), String::new(), "x".into())
        );
    }

    #[test]
    fn request_ids_are_uuid4() {
        let id = String::from_utf8(uuid4().to_vec()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(uuid4(), id.as_bytes());
    }

    #[test]
    fn request_id_text_is_the_formatted_bits() {
        for (a, b) in [
            (0, 0),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
        ] {
            let x = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
            let y = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
            let expected = format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                x >> 32,
                (x >> 16) & 0xffff,
                x & 0xffff,
                y >> 48,
                y & 0xffff_ffff_ffff
            );
            assert_eq!(std::str::from_utf8(&uuid4_from(a, b)).unwrap(), expected);
        }
    }

    /// The line as it was written before the hand-written writer.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
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

    #[test]
    fn access_log_line_is_what_serde_json_wrote() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let mut flags = ResponseFlags::EMPTY;
        flags.insert(mesh_core::ResponseFlag::UpstreamRemoteReset);
        flags.insert(mesh_core::ResponseFlag::NoHealthyUpstream);
        let controls: String = (0u8..0x20).map(char::from).collect();
        let tricky = format!("/a\"b\\c{controls}\u{7f}é\u{2028}💡/");
        let addrs: [Option<SocketAddr>; 5] = [
            Some("127.0.0.1:18180".parse().unwrap()),
            Some("0.0.0.0:0".parse().unwrap()),
            Some("255.255.255.255:65535".parse().unwrap()),
            Some("[::1]:8080".parse().unwrap()),
            None,
        ];
        for (i, addr) in addrs.into_iter().enumerate() {
            let (path, flags, cluster) = if i % 2 == 0 {
                (tricky.as_str(), flags, Some("outbound|80||backend"))
            } else {
                ("/", ResponseFlags::EMPTY, None)
            };
            let line = Line {
                start_time: time,
                method: "GET",
                path,
                authority: "backend\u{0}",
                protocol: "HTTP/1.1",
                response_code: 503,
                response_flags: flags,
                upstream_host: addr,
                upstream_cluster: cluster,
                duration_ms: if i == 0 { u64::MAX } else { i as u64 },
                attempts: 2,
                bytes_received: 0,
                bytes_sent: 1_234_567_890,
                request_id: "id\\",
            };
            let reference = Reference {
                start_time: humantime::format_rfc3339_millis(time).to_string(),
                method: line.method,
                path: line.path,
                authority: line.authority,
                protocol: line.protocol,
                response_code: line.response_code,
                response_flags: flags.to_string(),
                upstream_host: addr.map(|a| a.to_string()),
                upstream_cluster: cluster,
                duration_ms: line.duration_ms,
                attempts: line.attempts,
                bytes_received: line.bytes_received,
                bytes_sent: line.bytes_sent,
                request_id: line.request_id,
            };
            let mut text = Vec::new();
            line.write_json(&mut text);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                serde_json::to_string(&reference).unwrap()
            );
        }
    }

    #[test]
    fn escapes_at_every_offset_of_a_word() {
        for special in (0u8..0x20).chain([b'"', b'\\', 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0xff]) {
            for at in 0..20 {
                let mut text = vec![b'a'; 20];
                text[at] = special;
                let text = String::from_utf8_lossy(&text).into_owned();
                let mut out = Vec::new();
                json_str(&mut out, &text);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&text).unwrap(),
                    "byte {special:#x} at {at}"
                );
            }
        }
        // Words of bytes drawn around the boundaries (0x1f/0x20, '"', '\\').
        let picks = [
            0x00, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xff,
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let words = (0..200_000).map(|_| {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                *b = if seed >> 63 == 0 {
                    picks[(seed >> 40) as usize % picks.len()]
                } else {
                    0x61
                };
            }
            u64::from_le_bytes(bytes)
        });
        for word in [0u64, u64::MAX, 0x2020_2020_2020_2020, 0x1f20_2020_2020_2020]
            .into_iter()
            .chain(words)
        {
            assert_eq!(
                word_needs_escape(word),
                word.to_le_bytes().iter().any(|&b| needs_escape(b)),
                "{word:#x}"
            );
        }
    }
}
