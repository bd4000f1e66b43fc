//! `PeerAuthentication` and `AuthorizationPolicy` (security.istio.io).

use serde::Deserialize;

use super::common::{S, Unsupported};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PeerAuthenticationSpec {
    pub(crate) mtls: Option<Mtls>,
    pub(crate) selector: Unsupported,
    pub(crate) port_level_mtls: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Mtls {
    pub(crate) mode: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuthorizationPolicySpec {
    pub(crate) action: Option<S<String>>,
    #[serde(default)]
    pub(crate) rules: Vec<Rule>,
    pub(crate) selector: Unsupported,
    pub(crate) target_ref: Unsupported,
    pub(crate) target_refs: Unsupported,
    pub(crate) provider: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rule {
    #[serde(default)]
    pub(crate) from: Vec<From>,
    #[serde(default)]
    pub(crate) to: Vec<To>,
    pub(crate) when: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct From {
    pub(crate) source: Source,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Source {
    #[serde(default)]
    pub(crate) principals: Vec<S<String>>,
    pub(crate) not_principals: Unsupported,
    pub(crate) request_principals: Unsupported,
    pub(crate) not_request_principals: Unsupported,
    pub(crate) namespaces: Unsupported,
    pub(crate) not_namespaces: Unsupported,
    pub(crate) ip_blocks: Unsupported,
    pub(crate) not_ip_blocks: Unsupported,
    pub(crate) remote_ip_blocks: Unsupported,
    pub(crate) not_remote_ip_blocks: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct To {
    pub(crate) operation: Operation,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Operation {
    #[serde(default)]
    pub(crate) paths: Vec<S<String>>,
    #[serde(default)]
    pub(crate) methods: Vec<S<String>>,
    pub(crate) hosts: Unsupported,
    pub(crate) not_hosts: Unsupported,
    pub(crate) ports: Unsupported,
    pub(crate) not_ports: Unsupported,
    pub(crate) not_paths: Unsupported,
    pub(crate) not_methods: Unsupported,
}
