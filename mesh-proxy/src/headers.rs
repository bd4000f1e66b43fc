//! Hop-by-hop headers: they describe one connection and are not forwarded.

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers [`strip_hop_by_hop`] removes by name; `TE` last. A `static`,
/// not a `const`: a `const` array of `HeaderName`s is built and dropped again
/// at every use.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    TRAILER,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
];

/// Headers the proxy itself sets on what it forwards; a client naming them in
/// `Connection` must not make the proxy drop its own (the hop-by-hop abuse of
/// Davison 2019: `Connection: close, X-Forwarded-For`).
static OWN: [HeaderName; 2] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-forwarded-client-cert"),
];

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1 and every header named
/// in `Connection` (except the proxy's own, [`OWN`]). `TE: trailers` is kept
/// (gRPC needs it end to end).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present (most messages carry few headers and
    // none or one of these) instead of a lookup per hop-by-hop name.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection: keep-alive` or `close`, as most peers send, names nothing
    // beyond the standard set: no list of names to build.
    if present & 1 != 0 && names_other_headers(headers) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .filter(|n| !OWN.contains(n))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().take(HOP_BY_HOP.len() - 1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << (HOP_BY_HOP.len() - 1)) == 0 {
        return;
    }
    // `TE` may also have been named in `Connection` (and so be gone).
    let te_trailers = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(TE);
    if te_trailers {
        headers.insert(TE, http::HeaderValue::from_static("trailers"));
    }
}

/// Which of [`HOP_BY_HOP`] `name` is: one string match (by length, then
/// bytes) instead of a comparison with each.
fn hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "transfer-encoding" => 3,
        "upgrade" => 4,
        "trailer" => 5,
        "proxy-authenticate" => 6,
        "proxy-authorization" => 7,
        "te" => 8,
        _ => return None,
    })
}

/// Whether a `Connection` header names anything but `close` and the
/// standard hop-by-hop headers (which go anyway).
fn names_other_headers(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            v.split(',').any(|t| {
                let t = t.trim();
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("close")
                    && !HOP_BY_HOP
                        .iter()
                        .any(|h| t.eq_ignore_ascii_case(h.as_str()))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_and_standard_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("traceparent", "00-abc-def-01".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(
            h.get("connection").is_none()
                && h.get("keep-alive").is_none()
                && h.get("upgrade").is_none()
        );
        assert_eq!(h["te"], "trailers");
        assert_eq!(
            h["traceparent"], "00-abc-def-01",
            "trace headers pass untouched"
        );
    }

    #[test]
    fn the_proxys_own_headers_survive_being_named_in_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "x-request-id, X-Forwarded-Client-Cert, x-a"
                .parse()
                .unwrap(),
        );
        h.insert("x-request-id", "id".parse().unwrap());
        h.insert("x-forwarded-client-cert", "By=us".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h["x-request-id"], "id");
        assert_eq!(h["x-forwarded-client-cert"], "By=us");
        assert!(h.get("x-a").is_none());
    }

    /// The lookup-per-name version this replaced.
    fn reference(headers: &mut HeaderMap) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .filter(|n| !OWN.contains(n))
            .collect();
        for name in named {
            headers.remove(name);
        }
        for name in HOP_BY_HOP.iter().take(HOP_BY_HOP.len() - 1) {
            headers.remove(name);
        }
        let te_trailers = headers
            .get(TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
        headers.remove(TE);
        if te_trailers {
            headers.insert(TE, http::HeaderValue::from_static("trailers"));
        }
    }

    #[test]
    fn same_result_as_a_lookup_per_name() {
        let candidates: [(&str, &str); 13] = [
            ("connection", "keep-alive"),
            ("connection", "Keep-Alive, close"),
            ("connection", "te, x-a"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "close"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("trailer", "x-t"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("te", "gzip"),
            ("x-a", "1"),
        ];
        // Every subset of the candidates, on top of ordinary headers.
        for mask in 0u32..(1 << candidates.len()) {
            let mut h = HeaderMap::new();
            h.insert("host", "backend".parse().unwrap());
            h.insert("content-length", "2".parse().unwrap());
            for (i, (name, value)) in candidates.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    h.append(*name, value.parse().unwrap());
                }
            }
            let mut expected = h.clone();
            reference(&mut expected);
            strip_hop_by_hop(&mut h);
            assert_eq!(h, expected, "subset {mask:#x}");
        }
    }
}
