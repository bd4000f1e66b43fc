//! What a consistent-hash balancer hashes: Istio's `consistentHash` keys.

use std::fmt::Write as _;
use std::time::Duration;

use http::Request;
use http::header::{COOKIE, HeaderName, HeaderValue};
use mesh_core::context::ClientAddr;
use xxhash_rust::xxh64::xxh64;

use crate::config::ConfigError;
use crate::rng::FastRng;

/// The request property a consistent-hash balancer hashes.
///
/// A request without the property is balanced to a random endpoint, as Envoy
/// does — except for a cookie key with a TTL, where the balancer makes up a
/// cookie value, hashes it, and sets the cookie on the response so the client's
/// next requests stick.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashKey {
    /// `httpHeaderName`: the value of a request header.
    Header(HeaderName),
    /// `httpCookie`: the value of a cookie.
    Cookie(CookieKey),
    /// `useSourceIp`: the client's IP address (from the
    /// [`ClientAddr`] request extension).
    SourceIp,
    /// `httpQueryParameterName`: the value of a query parameter.
    QueryParameter(String),
}

/// Istio's `httpCookie`: `name`, `path` and `ttl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieKey {
    /// The cookie's name.
    pub name: String,
    /// The path set on a generated cookie.
    pub path: Option<String>,
    /// When set, a missing cookie is generated with this lifetime (`0s`: a
    /// session cookie); when unset, a missing cookie means no hash.
    pub ttl: Option<Duration>,
}

impl HashKey {
    /// Hash the named header; the name must be a valid header name.
    pub fn header(name: &str) -> Result<Self, ConfigError> {
        HeaderName::try_from(name)
            .map(HashKey::Header)
            .map_err(|_| ConfigError(format!("invalid header name for httpHeaderName: {name:?}")))
    }

    /// Hash the named cookie, generating it when absent if `ttl` is set.
    pub fn cookie(name: impl Into<String>, path: Option<String>, ttl: Option<Duration>) -> Self {
        HashKey::Cookie(CookieKey {
            name: name.into(),
            path,
            ttl,
        })
    }

    /// Hash the named query parameter.
    pub fn query_parameter(name: impl Into<String>) -> Self {
        HashKey::QueryParameter(name.into())
    }

    /// The hash of this key in `req`.
    pub(crate) fn hash<B>(&self, req: &Request<B>, rng: &mut FastRng) -> KeyHash {
        match self {
            HashKey::Header(name) => req
                .headers()
                .get(name)
                .map_or(KeyHash::None, |v| KeyHash::Hash(xxh64(v.as_bytes(), 0))),
            HashKey::SourceIp => req
                .extensions()
                .get::<ClientAddr>()
                .map_or(KeyHash::None, |a| {
                    let mut ip = String::with_capacity(40);
                    let _ = write!(ip, "{}", a.0.ip());
                    KeyHash::Hash(xxh64(ip.as_bytes(), 0))
                }),
            HashKey::QueryParameter(name) => req
                .uri()
                .query()
                .and_then(|q| query_value(q, name))
                .map_or(KeyHash::None, |v| KeyHash::Hash(xxh64(v.as_bytes(), 0))),
            HashKey::Cookie(key) => {
                if let Some(value) = cookie_value(req, &key.name) {
                    return KeyHash::Hash(xxh64(value.as_bytes(), 0));
                }
                let Some(ttl) = key.ttl else {
                    return KeyHash::None;
                };
                let value = format!("{:016x}", rng.next_u64());
                let mut set = format!("{}=\"{value}\"", key.name);
                if !ttl.is_zero() {
                    let _ = write!(set, "; Max-Age={}", ttl.as_secs().max(1));
                }
                if let Some(path) = &key.path {
                    let _ = write!(set, "; Path={path}");
                }
                set.push_str("; HttpOnly");
                match HeaderValue::try_from(set) {
                    Ok(header) => KeyHash::Generated {
                        hash: xxh64(value.as_bytes(), 0),
                        set_cookie: header,
                    },
                    // A name or path that cannot be a header: hash nothing.
                    Err(_) => KeyHash::None,
                }
            }
        }
    }
}

/// The outcome of hashing a request.
#[derive(Debug)]
pub(crate) enum KeyHash {
    /// The request had the key.
    Hash(u64),
    /// A cookie was generated; set it on the response.
    Generated { hash: u64, set_cookie: HeaderValue },
    /// No key: pick at random.
    None,
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn cookie_value<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn hash_of(key: &HashKey, req: &Request<()>) -> Option<u64> {
        match key.hash(req, &mut FastRng::seeded(1)) {
            KeyHash::Hash(h) => Some(h),
            KeyHash::Generated { hash, .. } => Some(hash),
            KeyHash::None => None,
        }
    }

    #[test]
    fn headers_query_and_source_ip() {
        let key = HashKey::header("x-user").unwrap();
        let a = Request::builder()
            .header("x-user", "alice")
            .body(())
            .unwrap();
        let b = Request::builder().header("x-user", "bob").body(()).unwrap();
        assert_eq!(hash_of(&key, &a), hash_of(&key, &a));
        assert_ne!(hash_of(&key, &a), hash_of(&key, &b));
        assert_eq!(hash_of(&key, &Request::new(())), None);
        assert!(HashKey::header("bad header").is_err());

        let q = HashKey::query_parameter("user");
        let r1 = Request::builder()
            .uri("/p?x=1&user=alice")
            .body(())
            .unwrap();
        let r2 = Request::builder().uri("/q?user=alice").body(()).unwrap();
        assert_eq!(hash_of(&q, &r1), hash_of(&q, &r2));
        assert_eq!(
            hash_of(
                &q,
                &Request::builder().uri("/?username=x").body(()).unwrap()
            ),
            None
        );

        let mut r = Request::new(());
        assert_eq!(hash_of(&HashKey::SourceIp, &r), None);
        r.extensions_mut()
            .insert(ClientAddr("10.1.2.3:4000".parse::<SocketAddr>().unwrap()));
        let mut r2 = Request::new(());
        r2.extensions_mut()
            .insert(ClientAddr("10.1.2.3:5000".parse::<SocketAddr>().unwrap()));
        assert_eq!(
            hash_of(&HashKey::SourceIp, &r),
            hash_of(&HashKey::SourceIp, &r2),
            "the port does not matter"
        );
    }

    #[test]
    fn cookies_are_read_or_generated() {
        let key = HashKey::cookie("session", Some("/".into()), Some(Duration::from_secs(3600)));
        let mut rng = FastRng::seeded(7);
        let KeyHash::Generated { hash, set_cookie } = key.hash(&Request::new(()), &mut rng) else {
            panic!("a missing cookie with a ttl is generated");
        };
        let header = set_cookie.to_str().unwrap();
        assert!(header.starts_with("session=\""), "{header}");
        assert!(
            header.contains("Max-Age=3600")
                && header.contains("Path=/")
                && header.contains("HttpOnly")
        );
        // The client echoes the cookie back: same hash.
        let value = header.split('"').nth(1).unwrap();
        let back = Request::builder()
            .header("cookie", format!("other=1; session=\"{value}\""))
            .body(())
            .unwrap();
        assert_eq!(hash_of(&key, &back), Some(hash));

        let no_ttl = HashKey::cookie("session", None, None);
        assert_eq!(hash_of(&no_ttl, &Request::new(())), None);
        let session = HashKey::cookie("s", None, Some(Duration::ZERO));
        let KeyHash::Generated { set_cookie, .. } = session.hash(&Request::new(()), &mut rng)
        else {
            panic!()
        };
        assert!(
            !set_cookie.to_str().unwrap().contains("Max-Age"),
            "ttl 0 is a session cookie"
        );
    }
}
