//! [`Head`]: the request head a retry is made from.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// A copy of a request's head, kept for its retries.
///
/// The copy is made for every request that may be retried and read only for
/// a retry, so it is taken in its cheapest form: the authority, the path and
/// every header name and value are copied, packed, into one buffer, and built
/// back into a URI and a header map only when a retry needs them.
///
/// Cloning the values instead would cost an atomic increment (and decrement)
/// per value, or an allocation for a value not yet shared, and would keep
/// the buffer they were parsed from referenced for as long as the request
/// lives. Order is kept: names in their first-seen order, each name's values
/// in theirs.
pub(super) struct Head {
    method: Method,
    scheme: Option<Scheme>,
    version: Version,
    extensions: Extensions,
    /// `authority`, then `path_and_query`, then per header: name length,
    /// name, value length, value, sensitive flag (lengths as native `usize`).
    packed: Vec<u8>,
    /// Length of the authority in `packed`, if the URI has one.
    authority: Option<usize>,
    /// Length of the path and query in `packed`, if the URI has one.
    path_and_query: Option<usize>,
}

const LEN: usize = size_of::<usize>();

impl Head {
    /// Copies `req`'s head.
    #[inline]
    pub(super) fn of<B>(req: &Request<B>) -> Head {
        let uri = req.uri();
        let authority = uri.authority().map(Authority::as_str);
        // An empty URI (h2 lets one through) has no path, though its
        // `path_and_query` reads as `/`: rebuilt, it must stay empty.
        let path = match uri.path().is_empty() {
            true => None,
            false => uri.path_and_query().map(PathAndQuery::as_str),
        };
        let headers = req.headers();
        let guess = authority.map_or(0, str::len)
            + path.map_or(0, str::len)
            + headers.len() * (2 * LEN + 1 + 40);
        let mut packed = Vec::with_capacity(guess);
        packed.extend_from_slice(authority.unwrap_or_default().as_bytes());
        packed.extend_from_slice(path.unwrap_or_default().as_bytes());
        for (name, value) in headers {
            let name = name.as_str().as_bytes();
            let value_bytes = value.as_bytes();
            packed.extend_from_slice(&name.len().to_ne_bytes());
            packed.extend_from_slice(name);
            packed.extend_from_slice(&value_bytes.len().to_ne_bytes());
            packed.extend_from_slice(value_bytes);
            packed.push(u8::from(value.is_sensitive()));
        }
        Head {
            method: req.method().clone(),
            scheme: uri.scheme().cloned(),
            version: req.version(),
            extensions: copy(req.extensions()),
            packed,
            authority: authority.map(str::len),
            path_and_query: path.map(str::len),
        }
    }

    /// A new request with this head and `body`; `None` if the head could not
    /// be built again. It always can, but for a header value made unchecked
    /// (`HeaderValue::from_maybe_shared_unchecked`) with bytes
    /// `HeaderValue::from_bytes` refuses: such a request is not retried.
    pub(super) fn request<B>(&self, body: B) -> Option<Request<B>> {
        let mut packed = Reader(&self.packed);
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.scheme.clone();
        if let Some(n) = self.authority {
            parts.authority =
                Some(Authority::from_maybe_shared(Bytes::copy_from_slice(packed.take(n)?)).ok()?);
        }
        if let Some(n) = self.path_and_query {
            parts.path_and_query = Some(
                PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(packed.take(n)?)).ok()?,
            );
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from_parts(parts).ok()?;
        *req.version_mut() = self.version;
        let map = req.headers_mut();
        while !packed.0.is_empty() {
            let n = packed.len()?;
            let name = HeaderName::from_bytes(packed.take(n)?).ok()?;
            let n = packed.len()?;
            let mut value = HeaderValue::from_bytes(packed.take(n)?).ok()?;
            value.set_sensitive(packed.take(1)? == [1]);
            map.append(name, value);
        }
        *req.extensions_mut() = copy(&self.extensions);
        Some(req)
    }

    /// The request's extensions as they came.
    pub(super) fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

/// Reads [`Head::packed`] front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        self.take(LEN)?.try_into().ok().map(usize::from_ne_bytes)
    }
}

/// A copy of `extensions`. http keeps a map once anything was inserted,
/// even after it was removed again: an empty one is copied as none, which
/// spares the copy its allocation.
fn copy(extensions: &Extensions) -> Extensions {
    if extensions.is_empty() {
        Extensions::new()
    } else {
        extensions.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(r: &Request<()>) -> Vec<String> {
        r.headers()
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn a_request_made_from_the_head_is_the_request_it_was_taken_from() {
        let mut req = Request::post("http://reviews:9080/api?x=1")
            .version(Version::HTTP_2)
            .header("b", "1")
            .header("a", "2")
            .header("b", "3")
            .header("x-custom-name", "c=4")
            .header("b", "")
            .body(())
            .unwrap();
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        req.headers_mut().insert("authorization", secret);
        req.extensions_mut().insert(7u32);
        let head = Head::of(&req);
        let again = head.request(()).unwrap();
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), req.version());
        assert_eq!(again.headers(), req.headers());
        assert_eq!(order(&again), order(&req));
        assert_eq!(
            order(&again),
            [
                "b=1",
                "b=3",
                "b=",
                "a=2",
                "x-custom-name=c=4",
                "authorization=Bearer t"
            ]
        );
        assert!(again.headers()["authorization"].is_sensitive());
        assert!(!again.headers()["a"].is_sensitive());
        assert_eq!(again.extensions().get::<u32>(), Some(&7));
        assert_eq!(head.extensions().get::<u32>(), Some(&7));
    }

    #[test]
    fn every_form_of_request_target_is_built_again() {
        for target in [
            "/",
            "/a/b?c=d&e",
            "*",
            "reviews:9080",
            "http://reviews:9080",
            "https://user@reviews/x?y",
            "grpc://svc.ns:50051/pkg.Svc/Method",
            "",
        ] {
            let method = if target == "reviews:9080" {
                Method::CONNECT
            } else {
                Method::GET
            };
            let uri = match target {
                "" => Uri::from_parts(http::uri::Parts::default()).unwrap(),
                t => t.parse().unwrap(),
            };
            let req = Request::builder().method(method).uri(uri).body(()).unwrap();
            let again = Head::of(&req).request(()).unwrap();
            assert_eq!(again.uri(), req.uri(), "{target}");
            assert_eq!(again.uri().to_string(), req.uri().to_string(), "{target}");
        }
    }

    #[test]
    fn the_head_keeps_no_reference_to_the_bytes_it_was_copied_from() {
        // As hyper parses them: values and path are slices of one buffer.
        let buffer = Bytes::from(b"/path?q=1 some-value".to_vec());
        let mut req = Request::new(());
        *req.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..9)).unwrap();
        req.headers_mut().insert(
            "x-a",
            HeaderValue::from_maybe_shared(buffer.slice(10..)).unwrap(),
        );
        let head = Head::of(&req);
        drop(req);
        assert!(buffer.is_unique(), "the copy holds the buffer");
        let again = head.request(()).unwrap();
        assert_eq!(again.uri(), "/path?q=1");
        assert_eq!(again.headers()["x-a"], "some-value");
    }
}
