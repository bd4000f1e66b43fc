//! `ServiceEntry` (networking.istio.io).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{S, Unsupported};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ServiceEntrySpec {
    pub(crate) hosts: Vec<S<String>>,
    #[serde(default)]
    pub(crate) ports: Vec<ServicePort>,
    pub(crate) resolution: Option<S<String>>,
    #[serde(default)]
    pub(crate) endpoints: Vec<WorkloadEntry>,
    pub(crate) location: Option<S<String>>,
    #[serde(default)]
    pub(crate) addresses: Vec<S<String>>,
    pub(crate) export_to: Unsupported,
    pub(crate) subject_alt_names: Unsupported,
    pub(crate) workload_selector: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ServicePort {
    pub(crate) number: S<u32>,
    pub(crate) name: Option<S<String>>,
    pub(crate) protocol: Option<S<String>>,
    pub(crate) target_port: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WorkloadEntry {
    pub(crate) address: S<String>,
    #[serde(default)]
    pub(crate) ports: BTreeMap<String, S<u32>>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) weight: Option<S<i64>>,
    pub(crate) locality: Option<S<String>>,
    pub(crate) network: Unsupported,
    pub(crate) service_account: Unsupported,
}
