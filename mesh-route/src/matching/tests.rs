//! Table-driven matching tests: the bookinfo manifests' routes, regex
//! anchoring, case-insensitive URIs, header presence and absence, paths as
//! received.

use http::{HeaderName, Method, Request};

use super::RouteMatcher;
use crate::config::{ConfigErrorKind, HttpMatch, StringMatch};

fn exact(s: &str) -> StringMatch {
    StringMatch::exact(s)
}
fn prefix(s: &str) -> StringMatch {
    StringMatch::prefix(s)
}
fn regex(s: &str) -> StringMatch {
    StringMatch::regex(s)
}
fn h(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}
fn uri(m: StringMatch) -> HttpMatch {
    HttpMatch::default().with_uri(m)
}

/// A request: `path` (origin-form or absolute), then `name: value` headers.
fn req(path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

struct Case {
    what: &'static str,
    req: Request<()>,
    /// The index of the first matching block, `None` for no match.
    expect: Option<usize>,
}

fn case(what: &'static str, req: Request<()>, expect: Option<usize>) -> Case {
    Case { what, req, expect }
}

fn run(blocks: Vec<HttpMatch>, cases: Vec<Case>) {
    let m = RouteMatcher::new(&blocks).unwrap();
    for c in cases {
        assert_eq!(m.find(&c.req), c.expect, "{}: {:?}", c.what, c.req.uri());
        assert_eq!(m.matches(&c.req), c.expect.is_some(), "{}", c.what);
    }
}

#[test]
fn bookinfo_gateway_uris() {
    // bookinfo-gateway.yaml: five blocks ORed.
    let blocks = vec![
        uri(exact("/productpage")),
        uri(prefix("/static")),
        uri(exact("/login")),
        uri(exact("/logout")),
        uri(prefix("/api/v1/products")),
    ];
    run(
        blocks,
        vec![
            case("exact", req("/productpage", &[]), Some(0)),
            case(
                "exact ignores the query",
                req("/productpage?u=test", &[]),
                Some(0),
            ),
            case("exact is not a prefix", req("/productpage/1", &[]), None),
            case("exact is case-sensitive", req("/ProductPage", &[]), None),
            case("prefix", req("/static/bootstrap.css", &[]), Some(1)),
            case("prefix of itself", req("/static", &[]), Some(1)),
            case("prefix is raw bytes", req("/staticfoo", &[]), Some(1)),
            case("login", req("/login", &[]), Some(2)),
            case("logout", req("/logout", &[]), Some(3)),
            case("api", req("/api/v1/products/0/reviews", &[]), Some(4)),
            case("shorter than the prefix", req("/api/v1/product", &[]), None),
            case("root", req("/", &[]), None),
        ],
    );
}

#[test]
fn bookinfo_end_user_header() {
    // virtual-service-reviews-test-v2 / -jason-v2-v3 / ratings-test-abort /
    // ratings-test-delay: `headers: {end-user: {exact: jason}}`.
    let blocks = vec![HttpMatch::default().with_header(h("end-user"), exact("jason"))];
    run(
        blocks,
        vec![
            case(
                "jason",
                req("/reviews/0", &[("end-user", "jason")]),
                Some(0),
            ),
            case(
                "value is case-sensitive",
                req("/", &[("end-user", "Jason")]),
                None,
            ),
            case(
                "exact, not prefix",
                req("/", &[("end-user", "jason2")]),
                None,
            ),
            case("absent", req("/", &[]), None),
            case("another header", req("/", &[("x-user", "jason")]), None),
            case(
                "several values joined",
                req("/", &[("end-user", "jason"), ("end-user", "bob")]),
                None,
            ),
        ],
    );
}

#[test]
fn catch_all_matches_everything() {
    let m = RouteMatcher::new(&[]).unwrap();
    assert!(m.matches(&req("/anything?at=all", &[])));
    assert!(m.is_empty());
    // An empty block (no condition) matches everything too.
    run(
        vec![HttpMatch::default()],
        vec![case("empty block", req("/x", &[]), Some(0))],
    );
}

#[test]
fn regex_matches_the_whole_path() {
    let blocks = vec![uri(regex(r"/api/v\d+/.*")), uri(regex("/a|/b"))];
    run(
        blocks,
        vec![
            case("full match", req("/api/v2/users", &[]), Some(0)),
            case(
                "not anchored at the start",
                req("/x/api/v2/users", &[]),
                None,
            ),
            case("query stripped", req("/api/v1/x?y=/z", &[]), Some(0)),
            case(
                "alternation is anchored as a whole",
                req("/a", &[]),
                Some(1),
            ),
            case("alternation: /b", req("/b", &[]), Some(1)),
            case("alternation, not a prefix", req("/a/x", &[]), None),
            case("alternation, not a suffix", req("/x/b", &[]), None),
        ],
    );
}

#[test]
fn regex_query_params_match_whole_values() {
    // Istio's example: `\d+$` matches `123` but not `a123`.
    let blocks = vec![HttpMatch::default().with_query_param("id", regex(r"\d+$"))];
    run(
        blocks,
        vec![
            case("digits", req("/?id=123", &[]), Some(0)),
            case("leading letter", req("/?id=a123", &[]), None),
            case("trailing letter", req("/?id=123a", &[]), None),
            case("first value counts", req("/?id=1&id=x", &[]), Some(0)),
            case("absent", req("/?other=1", &[]), None),
        ],
    );
}

#[test]
fn query_params_exact_and_empty() {
    let blocks = vec![
        HttpMatch::default().with_query_param("debug", exact("")),
        HttpMatch::default().with_query_param("user", exact("a%20b")),
    ];
    run(
        blocks,
        vec![
            case(
                "?debug alone has the value \"\"",
                req("/p?debug", &[]),
                Some(0),
            ),
            case("?debug= too", req("/p?x=1&debug=", &[]), Some(0)),
            case("a value is not \"\"", req("/p?debug=1", &[]), None),
            case("raw, not decoded", req("/p?user=a%20b", &[]), Some(1)),
            case("decoded form differs", req("/p?user=a+b", &[]), None),
            case("name must equal", req("/p?debugx", &[]), None),
        ],
    );
}

#[test]
fn regex_that_escapes_its_anchors_is_refused() {
    // `a)|(b` wrapped naively would become `^(?:a)|(b)$`: a prefix match.
    let err = RouteMatcher::new(&[uri(regex("a)|(b"))]).unwrap_err();
    assert!(matches!(err.kind(), ConfigErrorKind::Regex { .. }), "{err}");
    let err = RouteMatcher::new(&[uri(regex("(unclosed"))]).unwrap_err();
    assert!(err.to_string().contains("(unclosed"), "{err}");
    // A huge pattern is refused rather than compiled.
    let big = "(a{1000}){1000}";
    assert!(RouteMatcher::new(&[uri(regex(big))]).is_err());
}

#[test]
fn ignore_uri_case_for_exact_and_prefix_only() {
    let blocks = vec![
        uri(exact("/Login")).ignore_uri_case(true),
        uri(prefix("/API/")).ignore_uri_case(true),
        uri(regex("/abc")).ignore_uri_case(true),
    ];
    run(
        blocks,
        vec![
            case("exact, lower", req("/login", &[]), Some(0)),
            case("exact, upper", req("/LOGIN", &[]), Some(0)),
            case("exact still exact", req("/login/x", &[]), None),
            case("prefix, mixed", req("/api/Users", &[]), Some(1)),
            case("prefix shorter", req("/ap", &[]), None),
            case("regex as configured", req("/abc", &[]), Some(2)),
            case("regex is not affected", req("/ABC", &[]), None),
        ],
    );
    // Without the flag, case matters.
    run(
        vec![uri(exact("/Login"))],
        vec![case("sensitive", req("/login", &[]), None)],
    );
}

#[test]
fn header_presence_and_absence() {
    let blocks = vec![
        HttpMatch::default()
            .with_uri(prefix("/"))
            .without_header(h("x-canary"), None)
            .without_header(h("x-env"), Some(exact("test"))),
    ];
    run(
        blocks,
        vec![
            case("neither", req("/", &[]), Some(0)),
            case(
                "x-canary present (any value)",
                req("/", &[("x-canary", "")]),
                None,
            ),
            case("x-env=test", req("/", &[("x-env", "test")]), None),
            case("x-env=prod", req("/", &[("x-env", "prod")]), Some(0)),
        ],
    );
    let blocks = vec![HttpMatch::default().with_header_present(h("x-debug"))];
    run(
        blocks,
        vec![
            case("present, empty", req("/", &[("x-debug", "")]), Some(0)),
            case("present", req("/", &[("x-debug", "1")]), Some(0)),
            case("absent", req("/", &[]), None),
        ],
    );
}

#[test]
fn header_prefix_regex_and_joined_values() {
    let blocks = vec![
        HttpMatch::default().with_header(h("user-agent"), prefix("curl/")),
        HttpMatch::default().with_header(h("x-ids"), regex(r"\d+(,\d+)*")),
    ];
    run(
        blocks,
        vec![
            case("prefix", req("/", &[("user-agent", "curl/8.0")]), Some(0)),
            case("prefix miss", req("/", &[("user-agent", "Mozilla")]), None),
            case(
                "joined with commas",
                req("/", &[("x-ids", "1"), ("x-ids", "22")]),
                Some(1),
            ),
            case("regex whole value", req("/", &[("x-ids", "1,a")]), None),
        ],
    );
}

#[test]
fn pseudo_header_keys_are_ignored_in_headers() {
    let blocks = vec![HttpMatch::default().with_header(h("method"), exact("POST"))];
    run(blocks, vec![case("ignored key", req("/", &[]), Some(0))]);
}

#[test]
fn method_authority_scheme() {
    let blocks = vec![
        HttpMatch::default().with_method(exact("POST")),
        HttpMatch::default().with_authority(exact("reviews:9080")),
        HttpMatch::default().with_scheme(exact("https")),
        HttpMatch::default().with_authority(regex(r"ratings(\.default)?")),
    ];
    let post = Request::builder()
        .method(Method::POST)
        .uri("/")
        .body(())
        .unwrap();
    run(
        blocks,
        vec![
            case("method", post, Some(0)),
            case("method is exact and case-sensitive", req("/", &[]), None),
            case(
                "authority from Host",
                req("/", &[("host", "reviews:9080")]),
                Some(1),
            ),
            case(
                "authority as received: port matters",
                req("/", &[("host", "reviews")]),
                None,
            ),
            case(
                "authority from the URI",
                req("http://reviews:9080/", &[]),
                Some(1),
            ),
            case("scheme from the URI", req("https://x/", &[]), Some(2)),
            case("origin-form is http", req("/", &[("host", "x")]), None),
            case(
                "authority regex",
                req("/", &[("host", "ratings.default")]),
                Some(3),
            ),
            case(
                "authority regex is anchored",
                req("/", &[("host", "ratings.default.svc")]),
                None,
            ),
        ],
    );
}

#[test]
fn conditions_and_blocks_or() {
    let blocks = vec![
        HttpMatch::default()
            .with_uri(prefix("/reviews"))
            .with_header(h("end-user"), exact("jason")),
        HttpMatch::default().with_uri(exact("/health")),
    ];
    run(
        blocks,
        vec![
            case(
                "both conditions",
                req("/reviews/1", &[("end-user", "jason")]),
                Some(0),
            ),
            case("uri only: AND fails", req("/reviews/1", &[]), None),
            case(
                "header only: AND fails",
                req("/ratings", &[("end-user", "jason")]),
                None,
            ),
            case("second block", req("/health", &[]), Some(1)),
        ],
    );
}

#[test]
fn paths_are_compared_as_received() {
    // Nothing is normalised: none of these is the `/admin` route.
    let blocks = vec![uri(prefix("/admin")), uri(prefix("/public"))];
    run(
        blocks,
        vec![
            case(
                "dot-dot stays under /public",
                req("/public/../admin", &[]),
                Some(1),
            ),
            case("dot segment", req("/./admin", &[]), None),
            case("double slash", req("//admin", &[]), None),
            case("percent-encoded letter", req("/%61dmin", &[]), None),
            case("encoded dot-dot", req("/public/%2e%2e/admin", &[]), Some(1)),
            case("upper case", req("/ADMIN", &[]), None),
            case("the real one", req("/admin/users", &[]), Some(0)),
        ],
    );
}
