//! Istio `AuthorizationPolicy` (subset) as plain Rust structs, and their
//! evaluation.

use std::sync::Arc;

use crate::identity::SPIFFE_SCHEME;

/// What a policy does when one of its rules matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allow matching requests (Istio's default action).
    #[default]
    Allow,
    /// Deny matching requests; evaluated before any ALLOW.
    Deny,
}

/// One `AuthorizationPolicy`: an action and its rules (OR'ed).
///
/// No rules: an ALLOW policy matches nothing (so, as Istio's `spec: {}`,
/// it denies everything); a rule with no `from` and no `to` (`rules: [{}]`)
/// matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// A name for logs (Istio's `metadata.name`).
    pub name: String,
    /// ALLOW or DENY.
    pub action: Action,
    /// The rules; any match is a match of the policy.
    pub rules: Vec<Rule>,
}

/// A rule: any of `from` AND any of `to` (an empty list matches all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// `from[].source`, OR'ed.
    pub from: Vec<Source>,
    /// `to[].operation`, OR'ed.
    pub to: Vec<Operation>,
}

/// `from.source`: fields AND'ed, values within a field OR'ed.
///
/// Principals are written as Istio does, without `spiffe://`
/// (`cluster.local/ns/default/sa/web`), with `*` as prefix, suffix or
/// presence wildcard. A request without mTLS has no principal: it matches no
/// `principals` entry, and matches `not_principals: ["*"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The peer's principal must match one of these (if any are given).
    pub principals: Vec<String>,
    /// The peer's principal must match none of these.
    pub not_principals: Vec<String>,
}

/// `to.operation`: fields AND'ed, values within a field OR'ed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operation {
    /// The request path (without query) must match one of these, if any.
    pub paths: Vec<String>,
    /// The request path must match none of these.
    pub not_paths: Vec<String>,
    /// The request method must match one of these, if any.
    pub methods: Vec<String>,
    /// The request method must match none of these.
    pub not_methods: Vec<String>,
}

/// Istio's string match: `*` (any non-empty), `abc*` (prefix), `*abc`
/// (suffix), else exact.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StringMatch {
    Presence,
    Prefix(Box<str>),
    Suffix(Box<str>),
    Exact(Box<str>),
}

impl StringMatch {
    fn new(pattern: &str) -> StringMatch {
        if pattern == "*" {
            StringMatch::Presence
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            StringMatch::Suffix(suffix.into())
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            StringMatch::Prefix(prefix.into())
        } else {
            StringMatch::Exact(pattern.into())
        }
    }

    fn principal(pattern: &str) -> StringMatch {
        StringMatch::new(pattern.strip_prefix(SPIFFE_SCHEME).unwrap_or(pattern))
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Presence => !value.is_empty(),
            StringMatch::Prefix(p) => value.starts_with(&**p),
            StringMatch::Suffix(s) => value.ends_with(&**s),
            StringMatch::Exact(e) => value == &**e,
        }
    }
}

/// `values` empty → true; else any matches.
fn any_or_empty(values: &[StringMatch], value: &str) -> bool {
    values.is_empty() || values.iter().any(|m| m.matches(value))
}

fn none(values: &[StringMatch], value: &str) -> bool {
    !values.iter().any(|m| m.matches(value))
}

#[derive(Debug)]
struct CompiledSource {
    principals: Vec<StringMatch>,
    not_principals: Vec<StringMatch>,
}

#[derive(Debug)]
struct CompiledOperation {
    paths: Vec<StringMatch>,
    not_paths: Vec<StringMatch>,
    methods: Vec<StringMatch>,
    not_methods: Vec<StringMatch>,
}

#[derive(Debug)]
struct CompiledRule {
    from: Vec<CompiledSource>,
    to: Vec<CompiledOperation>,
}

#[derive(Debug)]
struct CompiledPolicy {
    name: Arc<str>,
    rules: Vec<CompiledRule>,
}

/// What a request carries that policies look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestAttributes<'a> {
    /// The peer's principal (SPIFFE ID without `spiffe://`); empty without mTLS.
    pub principal: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
}

impl CompiledRule {
    fn matches(&self, req: &RequestAttributes<'_>) -> bool {
        let from = self.from.is_empty()
            || self.from.iter().any(|s| {
                (s.principals.is_empty()
                    || (!req.principal.is_empty() && any_or_empty(&s.principals, req.principal)))
                    && none(&s.not_principals, req.principal)
            });
        let to = self.to.is_empty()
            || self.to.iter().any(|o| {
                any_or_empty(&o.paths, req.path)
                    && none(&o.not_paths, req.path)
                    && any_or_empty(&o.methods, req.method)
                    && none(&o.not_methods, req.method)
            });
        from && to
    }
}

impl CompiledPolicy {
    fn new(p: &AuthorizationPolicy) -> CompiledPolicy {
        let list = |v: &[String], f: fn(&str) -> StringMatch| v.iter().map(|s| f(s)).collect();
        CompiledPolicy {
            name: p.name.as_str().into(),
            rules: p
                .rules
                .iter()
                .map(|r| CompiledRule {
                    from: r
                        .from
                        .iter()
                        .map(|s| CompiledSource {
                            principals: list(&s.principals, StringMatch::principal),
                            not_principals: list(&s.not_principals, StringMatch::principal),
                        })
                        .collect(),
                    to: r
                        .to
                        .iter()
                        .map(|o| CompiledOperation {
                            paths: list(&o.paths, StringMatch::new),
                            not_paths: list(&o.not_paths, StringMatch::new),
                            methods: list(&o.methods, StringMatch::new),
                            not_methods: list(&o.not_methods, StringMatch::new),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn matches(&self, req: &RequestAttributes<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(req))
    }
}

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `policy` names the ALLOW policy that matched, `None` when no
    /// ALLOW policy exists.
    Allow {
        /// The matching ALLOW policy.
        policy: Option<Arc<str>>,
    },
    /// Denied; `policy` names the DENY policy that matched, `None` when
    /// ALLOW policies exist and none matched.
    Deny {
        /// The matching DENY policy.
        policy: Option<Arc<str>>,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A set of policies, compiled for evaluation in Istio's order: any DENY
/// match denies; then, with no ALLOW policy, allow; then any ALLOW match
/// allows; else deny.
///
/// ```
/// use mesh_tls::authz::{Action, AuthorizationPolicy, Authorizer, Operation, RequestAttributes, Rule, Source};
///
/// let authz = Authorizer::new([AuthorizationPolicy {
///     name: "web-reads".into(),
///     action: Action::Allow,
///     rules: vec![Rule {
///         from: vec![Source { principals: vec!["cluster.local/ns/default/sa/web".into()], ..Default::default() }],
///         to: vec![Operation { methods: vec!["GET".into()], paths: vec!["/api/*".into()], ..Default::default() }],
///     }],
/// }]);
/// let req = |principal, method, path| RequestAttributes { principal, method, path };
/// assert!(authz.check(&req("cluster.local/ns/default/sa/web", "GET", "/api/items")).is_allowed());
/// assert!(!authz.check(&req("cluster.local/ns/default/sa/web", "POST", "/api/items")).is_allowed());
/// assert!(!authz.check(&req("", "GET", "/api/items")).is_allowed());
/// ```
#[derive(Debug, Default)]
pub struct Authorizer {
    deny: Vec<CompiledPolicy>,
    allow: Vec<CompiledPolicy>,
}

impl Authorizer {
    /// Compiles `policies`.
    pub fn new(policies: impl IntoIterator<Item = AuthorizationPolicy>) -> Authorizer {
        let mut authz = Authorizer::default();
        for p in policies {
            let compiled = CompiledPolicy::new(&p);
            match p.action {
                Action::Allow => authz.allow.push(compiled),
                Action::Deny => authz.deny.push(compiled),
            }
        }
        authz
    }

    /// Whether any policy is configured.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// Evaluates one request.
    pub fn check(&self, req: &RequestAttributes<'_>) -> Decision {
        if let Some(p) = self.deny.iter().find(|p| p.matches(req)) {
            return Decision::Deny {
                policy: Some(p.name.clone()),
            };
        }
        if self.allow.is_empty() {
            return Decision::Allow { policy: None };
        }
        match self.allow.iter().find(|p| p.matches(req)) {
            Some(p) => Decision::Allow {
                policy: Some(p.name.clone()),
            },
            None => Decision::Deny { policy: None },
        }
    }
}
