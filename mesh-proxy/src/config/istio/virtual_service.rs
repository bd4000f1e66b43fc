//! `VirtualService` (networking.istio.io).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{Percent, PortSelector, S, StringMatch, Unsupported};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VirtualServiceSpec {
    #[serde(default)]
    pub(crate) hosts: Vec<S<String>>,
    #[serde(default)]
    pub(crate) http: Vec<HttpRoute>,
    pub(crate) gateways: Unsupported,
    pub(crate) export_to: Unsupported,
    pub(crate) tcp: Unsupported,
    pub(crate) tls: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HttpRoute {
    pub(crate) name: Option<S<String>>,
    #[serde(rename = "match", default)]
    pub(crate) matches: Vec<MatchRequest>,
    #[serde(default)]
    pub(crate) route: Vec<RouteDestination>,
    pub(crate) redirect: Option<Redirect>,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) timeout: Option<S<String>>,
    pub(crate) retries: Option<Retries>,
    pub(crate) fault: Option<Fault>,
    pub(crate) mirror: Option<Destination>,
    pub(crate) mirror_percentage: Option<Percent>,
    pub(crate) mirror_percent: Option<S<u32>>,
    #[serde(default)]
    pub(crate) mirrors: Vec<MirrorPolicy>,
    pub(crate) headers: Option<Headers>,
    pub(crate) direct_response: Unsupported,
    pub(crate) delegate: Unsupported,
    pub(crate) cors_policy: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MatchRequest {
    pub(crate) name: Option<S<String>>,
    pub(crate) uri: Option<StringMatch>,
    pub(crate) scheme: Option<StringMatch>,
    pub(crate) method: Option<StringMatch>,
    pub(crate) authority: Option<StringMatch>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub(crate) query_params: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub(crate) without_headers: BTreeMap<String, StringMatch>,
    pub(crate) ignore_uri_case: Option<bool>,
    pub(crate) port: Option<S<u32>>,
    pub(crate) source_labels: Unsupported,
    pub(crate) gateways: Unsupported,
    pub(crate) source_namespace: Unsupported,
    pub(crate) stat_prefix: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RouteDestination {
    pub(crate) destination: Destination,
    pub(crate) weight: Option<S<i64>>,
    pub(crate) headers: Option<Headers>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Destination {
    pub(crate) host: S<String>,
    pub(crate) subset: Option<S<String>>,
    pub(crate) port: Option<PortSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MirrorPolicy {
    pub(crate) destination: Destination,
    pub(crate) percentage: Option<Percent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Redirect {
    pub(crate) uri: Option<S<String>>,
    pub(crate) authority: Option<S<String>>,
    pub(crate) redirect_code: Option<S<u16>>,
    pub(crate) port: Unsupported,
    pub(crate) derive_port: Unsupported,
    pub(crate) scheme: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rewrite {
    pub(crate) uri: Option<S<String>>,
    pub(crate) authority: Option<S<String>>,
    pub(crate) uri_regex_rewrite: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Retries {
    pub(crate) attempts: Option<S<i64>>,
    pub(crate) per_try_timeout: Option<S<String>>,
    pub(crate) retry_on: Option<S<String>>,
    pub(crate) retry_remote_localities: Unsupported,
    pub(crate) retry_ignore_previous_hosts: Option<bool>,
    pub(crate) backoff: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Fault {
    pub(crate) delay: Option<Delay>,
    pub(crate) abort: Option<Abort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Delay {
    pub(crate) fixed_delay: Option<S<String>>,
    pub(crate) percentage: Option<Percent>,
    pub(crate) percent: Option<S<u32>>,
    pub(crate) exponential_delay: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Abort {
    pub(crate) http_status: Option<S<i64>>,
    pub(crate) grpc_status: Option<S<String>>,
    pub(crate) percentage: Option<Percent>,
    pub(crate) percent: Option<S<u32>>,
    pub(crate) http2_error: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Headers {
    pub(crate) request: Option<HeaderOperations>,
    pub(crate) response: Option<HeaderOperations>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderOperations {
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) add: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}
