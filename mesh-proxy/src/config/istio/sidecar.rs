//! `Sidecar` (networking.istio.io): the proxy's listeners.

use serde::Deserialize;

use super::common::{S, Unsupported};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SidecarSpec {
    #[serde(default)]
    pub(crate) ingress: Vec<Listener>,
    #[serde(default)]
    pub(crate) egress: Vec<Listener>,
    pub(crate) workload_selector: Unsupported,
    pub(crate) outbound_traffic_policy: Unsupported,
    pub(crate) inbound_connection_pool: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Listener {
    pub(crate) port: Option<ListenerPort>,
    pub(crate) bind: Option<S<String>>,
    pub(crate) default_endpoint: Option<S<String>>,
    #[serde(default)]
    pub(crate) hosts: Vec<S<String>>,
    pub(crate) capture_mode: Option<S<String>>,
    pub(crate) tls: Unsupported,
    pub(crate) connection_pool: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListenerPort {
    pub(crate) number: S<u32>,
    pub(crate) protocol: Option<S<String>>,
    pub(crate) name: Option<S<String>>,
    pub(crate) target_port: Unsupported,
}
