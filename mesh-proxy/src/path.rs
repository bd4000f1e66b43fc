//! Request path normalisation, before routing and authorization.
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
//! kept as sent.

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

/// The request with its path normalised, or why it is refused.
fn normalize_request<B>(mut req: Request<B>) -> Result<Request<B>, BadPath> {
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

/// Normalises each request's path before `inner` (routing, authorization)
/// sees it; a refused path is answered 400 here.
#[derive(Clone, Debug)]
pub(crate) struct NormalizePath<S> {
    inner: S,
}

impl<S> NormalizePath<S> {
    pub(crate) fn new(inner: S) -> Self {
        NormalizePath { inner }
    }
}

type Ready = std::future::Ready<Result<Response<Body>, BoxError>>;

impl<S> Service<Request<Body>> for NormalizePath<S>
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
            Err(BadPath(reason)) => {
                tracing::debug!(reason, "request path refused");
                let mut res = Response::new(body::full(format!("{reason}\n")));
                *res.status_mut() = StatusCode::BAD_REQUEST;
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
    }
}
