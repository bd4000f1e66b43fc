//! [`Head`]: the request head a retry is made from.

use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// A copy of a request's head, kept for its retries.
///
/// The headers are kept as a list, not a [`HeaderMap`](http::HeaderMap): a copy is made for
/// every request that may be retried and read only for a retry, so it is
/// taken in its cheapest form (one allocation, no hash index) and built back
/// into a map only when a retry needs one. Order is kept: names in their
/// first-seen order, each name's values in theirs.
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    extensions: Extensions,
}

impl Head {
    /// Copies `req`'s head.
    #[inline]
    pub(super) fn of<B>(req: &Request<B>) -> Head {
        let map = req.headers();
        let mut headers = Vec::with_capacity(map.len());
        headers.extend(map.iter().map(|(n, v)| (n.clone(), v.clone())));
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
            extensions: req.extensions().clone(),
        }
    }

    /// A new request with this head and `body`.
    pub(super) fn request<B>(&self, body: B) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        let map = req.headers_mut();
        map.reserve(self.headers.len());
        for (name, value) in &self.headers {
            map.append(name.clone(), value.clone());
        }
        *req.extensions_mut() = self.extensions.clone();
        req
    }

    /// The request's extensions as they came.
    pub(super) fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_made_from_the_head_is_the_request_it_was_taken_from() {
        let mut req = Request::post("http://reviews:9080/api?x=1")
            .version(Version::HTTP_2)
            .header("b", "1")
            .header("a", "2")
            .header("b", "3")
            .header("set-cookie", "c=4")
            .header("b", "5")
            .body(())
            .unwrap();
        req.extensions_mut().insert(7u32);
        let head = Head::of(&req);
        let again = head.request(());
        assert_eq!(again.method(), req.method());
        assert_eq!(again.uri(), req.uri());
        assert_eq!(again.version(), req.version());
        assert_eq!(again.headers(), req.headers());
        let order = |r: &Request<()>| {
            r.headers()
                .iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&again), order(&req));
        assert_eq!(
            order(&again),
            ["b=1", "b=3", "b=5", "a=2", "set-cookie=c=4"]
        );
        assert_eq!(again.extensions().get::<u32>(), Some(&7));
        assert_eq!(head.extensions().get::<u32>(), Some(&7));
    }
}
