//! Request normalisation, before routing and authorization: what the
//! checks see is what is forwarded.
//!
//! # Method
//!
//! A method with lower-case letters is refused with 400, as Istio does:
//! `get` is not `GET` to an AuthorizationPolicy's `methods`, but many apps
//! treat it as `GET`.
//!
//! # Host
//!
//! RFC 9112 §3.2: an HTTP/1.1 request without `Host`, with two, or with a
//! `Host` (or URI authority) carrying userinfo (`a@web`) or a port that is not
//! a port is refused with 400. An absolute-form target's authority (HTTP/2's
//! `:authority`) replaces `Host`, so that routing (which reads the authority
//! first), authorization and the app all see one value. An `Expect` other
//! than `100-continue` is answered 417 (RFC 9110 §10.1.1).
//!
//! # Path
//!
//! A DENY rule on `/admin` means nothing if `//admin`, `/%61dmin` or
//! `/x/../admin` reach an app that reads them as `/admin` (Envoy
//! CVE-2019-9901, Istio CVE-2021-31920). So every request's path is rewritten,
//! once, into the form that routing, authorization and the app all see — the
//! forwarded path *is* the checked path. The rules are Istio's `MERGE_SLASHES`
//! normalisation (its `BASE` plus merging slashes; `BASE`, Istio's install
//! default, leaves `//admin` open), with Envoy's edge advice for escaped
//! slashes:
//!
//! * `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded, once;
//!   other escapes are kept, with upper-case hex digits;
//! * `%00`, a broken escape, and `%2F` / `%5C` (any case) are refused with 400
//!   (Envoy's `path_with_escaped_slashes_action: REJECT_REQUEST`: decoding them
//!   would change what a segment is, keeping them lets an app decode them
//!   after the check);
//! * `\` becomes `/`; runs of `/` become one;
//! * `.` and `..` segments are resolved (RFC 3986 §5.2.4), never above the root.
//!
//! Paths stay case-sensitive, as Istio's `paths` are: `/ADMIN` is not `/admin`
//! (an app that folds case needs its rules written for that). The query is
//! kept as sent. Path parameters (`/admin;x`) are kept in the forwarded path;
//! authorization (mesh-tls) matches policies against the path without them.

use std::borrow::Cow;
use std::future::Future;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use mesh_core::BoxError;
use tower::Service;

use crate::body::{self, Body};

/// Why a path is refused (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadPath(pub(crate) &'static str);

/// The normalised form of `path` (which starts with `/`; anything else, such
/// as `*` of `OPTIONS *`, is returned as it is).
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, BadPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Ok(Cow::Borrowed(path));
    }
    if !needs_work(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // Decode and map `\`, then split into segments.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err(BadPath("broken percent-encoding in the path"));
                };
                // Both digits < 16.
                let value = (hi * 16 + lo) as u8;
                match value {
                    0 => return Err(BadPath("%00 in the path")),
                    b'/' | b'\\' => return Err(BadPath("escaped slash in the path")),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(char::from(b));
                    }
                    b => {
                        decoded.push('%');
                        decoded.push(char::from(HEX[usize::from(b >> 4)]));
                        decoded.push(char::from(HEX[usize::from(b & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => {
                decoded.push('/');
                i += 1;
            }
            _ => {
                // Copy the run up to the next byte that needs work; the run
                // starts and ends on ASCII bytes, so it is whole characters.
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'%' || b == b'\\')
                    .map_or(bytes.len(), |p| i + p);
                decoded.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path` has anything [`normalize`] would change or refuse: an
/// escape, a backslash, an empty segment or a dot segment.
fn needs_work(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &b)| match b {
        b'%' | b'\\' => true,
        b'/' => matches!(path.get(i + 1), Some(b'/' | b'.')),
        _ => false,
    })
}

/// Why a request is refused, and with which status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal(StatusCode, &'static str);

impl From<BadPath> for Refusal {
    fn from(e: BadPath) -> Self {
        Refusal(StatusCode::BAD_REQUEST, e.0)
    }
}

/// The request with its method, host and path checked and normalised (see
/// the module docs), or why it is refused.
fn normalize_request<B>(req: Request<B>) -> Result<Request<B>, Refusal> {
    let bad = |why| Refusal(StatusCode::BAD_REQUEST, why);
    if req
        .method()
        .as_str()
        .bytes()
        .any(|b| b.is_ascii_lowercase())
    {
        return Err(bad("lower-case letters in the method"));
    }
    let mut req = req;
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(bad("more than one Host"));
    }
    match req.uri().authority() {
        Some(authority) => {
            check_authority(authority)?;
            // The target's authority wins over `Host` (RFC 9112 §3.2.2).
            let value = http::HeaderValue::from_str(authority.as_str())
                .map_err(|_| bad("invalid authority"))?;
            req.headers_mut().insert(http::header::HOST, value);
        }
        None => match &host {
            Some(h) => {
                let authority = h
                    .to_str()
                    .ok()
                    .and_then(|h| h.parse::<http::uri::Authority>().ok())
                    .ok_or(bad("invalid Host"))?;
                check_authority(&authority)?;
            }
            None if req.version() == http::Version::HTTP_11 => {
                return Err(bad("no Host"));
            }
            None => {}
        },
    }
    if let Some(expect) = req.headers().get(http::header::EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Err(Refusal(
            StatusCode::EXPECTATION_FAILED,
            "unknown expectation",
        ));
    }
    Ok(normalize_path(req)?)
}

/// Refuses userinfo and a port that is not a port.
pub(crate) fn check_authority(authority: &http::uri::Authority) -> Result<(), Refusal> {
    if authority.as_str().contains('@') {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "userinfo in the authority",
        ));
    }
    // (`Authority::port` is `None` for a port over 65535, so look at the text.)
    if let Some((_, port)) = authority.as_str().rsplit_once(':')
        && !port.contains(']')
        && port.parse::<u16>().is_err()
    {
        return Err(Refusal(StatusCode::BAD_REQUEST, "invalid port"));
    }
    Ok(())
}

/// The request with its path normalised, or why it is refused.
fn normalize_path<B>(mut req: Request<B>) -> Result<Request<B>, BadPath> {
    let Some(pq) = req.uri().path_and_query() else {
        return Ok(req);
    };
    let path = pq.path();
    let normalized = match normalize(path)? {
        Cow::Borrowed(_) => return Ok(req),
        Cow::Owned(p) => p,
    };
    let new_pq = match pq.query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let new_pq =
        PathAndQuery::try_from(new_pq).map_err(|_| BadPath("the normalised path is invalid"))?;
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(new_pq);
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| BadPath("the normalised URI is invalid"))?;
    Ok(req)
}

/// [`normalize`] for the fuzz target and its corpus test (which check its
/// invariants: a result starting with `/`, with no empty, `.` or `..`
/// segment, that normalising again leaves alone). `Err` is a refusal (400).
#[doc(hidden)]
pub fn fuzz_normalize(path: &str) -> Result<String, &'static str> {
    normalize(path).map(Cow::into_owned).map_err(|e| e.0)
}

/// Normalises each request (see the module docs) before `inner` (routing,
/// authorization) sees it; a refused request is answered here.
#[derive(Clone, Debug)]
pub(crate) struct NormalizeRequest<S> {
    inner: S,
}

impl<S> NormalizeRequest<S> {
    pub(crate) fn new(inner: S) -> Self {
        NormalizeRequest { inner }
    }
}

type Ready = std::future::Ready<Result<Response<Body>, BoxError>>;

impl<S> Service<Request<Body>> for NormalizeRequest<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>,
    S::Future: Future<Output = Result<Response<Body>, BoxError>>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Either<Ready, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match normalize_request(req) {
            Ok(req) => Either::Right(self.inner.call(req)),
            Err(Refusal(status, reason)) => {
                tracing::debug!(reason, "request refused");
                let mut res = Response::new(body::full(format!("{reason}\n")));
                *res.status_mut() = status;
                Either::Left(std::future::ready(Ok(res)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn variants_of_admin_all_become_admin_or_are_refused() {
        for (input, want) in [
            ("/admin", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("///admin//x", Ok("/admin/x")),
            ("/./admin", Ok("/admin")),
            ("/x/../admin", Ok("/admin")),
            ("/../../admin", Ok("/admin")),
            ("/%61dmin", Ok("/admin")),
            ("/%2e%2e/admin", Ok("/admin")),
            ("/%2E/admin", Ok("/admin")),
            ("\\admin", Ok("\\admin")), // not origin-form: left alone
            ("/\\admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/admin/.", Ok("/admin/")),
            ("/admin/x/..", Ok("/admin/")),
            ("/ADMIN", Ok("/ADMIN")),
            ("/admin;x", Ok("/admin;x")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%c3%a9", Ok("/a%C3%A9")),
            ("/", Ok("/")),
            ("/..", Ok("/")),
            ("*", Ok("*")),
            ("/admin%2Fsecret", Err("escaped slash in the path")),
            ("/admin%2fsecret", Err("escaped slash in the path")),
            ("/%5Cadmin", Err("escaped slash in the path")),
            ("/admin%00", Err("%00 in the path")),
            ("/admin%", Err("broken percent-encoding in the path")),
            ("/admin%zz", Err("broken percent-encoding in the path")),
        ] {
            assert_eq!(fuzz_normalize(input), want.map(String::from), "{input}");
        }
    }

    #[test]
    fn plain_paths_are_not_copied() {
        assert!(matches!(normalize("/api/v1/x.json"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn the_query_is_kept() {
        let req = Request::get("http://web//a/./b?x=%2F..//")
            .body(())
            .unwrap();
        let req = normalize_request(req).unwrap();
        assert_eq!(req.uri().to_string(), "http://web/a/b?x=%2F..//");
        assert_eq!(req.headers()["host"], "web");
    }
}

#[cfg(test)]
mod head_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn check(req: http::request::Builder) -> Result<Request<()>, StatusCode> {
        normalize_request(req.body(()).unwrap()).map_err(|r| r.0)
    }

    #[test]
    fn methods_hosts_and_expectations() {
        let get = |host: &str| Request::get("/").header("host", host);
        assert!(check(get("web")).is_ok());
        assert!(check(get("web:8080")).is_ok());
        assert_eq!(check(get("web:99999")).unwrap_err(), 400);
        assert_eq!(check(get("a@web")).unwrap_err(), 400);
        assert_eq!(check(get("a b")).unwrap_err(), 400);
        assert_eq!(check(get("web").header("host", "other")).unwrap_err(), 400);
        assert_eq!(check(Request::get("/")).unwrap_err(), 400);
        assert!(check(Request::get("/").version(http::Version::HTTP_10)).is_ok());
        assert_eq!(check(get("web").method("get")).unwrap_err(), 400);
        assert!(check(get("web").method("PURGE")).is_ok());
        assert_eq!(check(get("web").header("expect", "foo")).unwrap_err(), 417);
        assert!(check(get("web").header("expect", "100-Continue")).is_ok());
        let req = check(Request::get("http://web/x").header("host", "other")).unwrap();
        assert_eq!(req.headers()["host"], "web");
        assert_eq!(check(Request::get("http://a@web/x")).unwrap_err(), 400);
    }
}
