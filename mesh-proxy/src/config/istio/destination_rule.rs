//! `DestinationRule` (networking.istio.io).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{S, Unsupported};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DestinationRuleSpec {
    pub(crate) host: S<String>,
    pub(crate) traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub(crate) subsets: Vec<Subset>,
    pub(crate) export_to: Unsupported,
    pub(crate) workload_selector: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Subset {
    pub(crate) name: S<String>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TrafficPolicy {
    pub(crate) load_balancer: Option<LoadBalancerSettings>,
    pub(crate) connection_pool: Option<ConnectionPool>,
    pub(crate) outlier_detection: Option<OutlierDetection>,
    pub(crate) tls: Option<ClientTls>,
    pub(crate) retry_budget: Option<RetryBudget>,
    pub(crate) port_level_settings: Unsupported,
    pub(crate) tunnel: Unsupported,
    pub(crate) proxy_protocol: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoadBalancerSettings {
    pub(crate) simple: Option<S<String>>,
    pub(crate) consistent_hash: Option<ConsistentHash>,
    pub(crate) locality_lb_setting: Unsupported,
    pub(crate) warmup_duration_secs: Unsupported,
    pub(crate) warmup: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConsistentHash {
    pub(crate) http_header_name: Option<S<String>>,
    pub(crate) http_cookie: Option<HttpCookie>,
    pub(crate) use_source_ip: Option<bool>,
    pub(crate) http_query_parameter_name: Option<S<String>>,
    pub(crate) ring_hash: Option<RingHash>,
    pub(crate) maglev: Option<Maglev>,
    pub(crate) minimum_ring_size: Option<S<u64>>,
    pub(crate) http_header_regex_rewrite: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HttpCookie {
    pub(crate) name: S<String>,
    pub(crate) path: Option<String>,
    pub(crate) ttl: Option<S<String>>,
    pub(crate) attributes: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RingHash {
    pub(crate) minimum_ring_size: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Maglev {
    pub(crate) table_size: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConnectionPool {
    pub(crate) tcp: Option<TcpSettings>,
    pub(crate) http: Option<HttpSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TcpSettings {
    pub(crate) max_connections: Option<S<i64>>,
    pub(crate) connect_timeout: Option<S<String>>,
    pub(crate) tcp_keepalive: Unsupported,
    pub(crate) max_connection_duration: Unsupported,
    pub(crate) idle_timeout: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HttpSettings {
    pub(crate) http1_max_pending_requests: Option<S<i64>>,
    pub(crate) http2_max_requests: Option<S<i64>>,
    pub(crate) max_retries: Option<S<i64>>,
    pub(crate) idle_timeout: Option<S<String>>,
    pub(crate) max_requests_per_connection: Unsupported,
    pub(crate) h2_upgrade_policy: Unsupported,
    pub(crate) use_client_protocol: Unsupported,
    pub(crate) max_concurrent_streams: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OutlierDetection {
    pub(crate) consecutive_errors: Option<S<i64>>,
    pub(crate) consecutive_5xx_errors: Option<S<i64>>,
    pub(crate) consecutive_gateway_errors: Option<S<i64>>,
    pub(crate) consecutive_local_origin_failures: Option<S<i64>>,
    pub(crate) split_external_local_origin_errors: Option<bool>,
    pub(crate) interval: Option<S<String>>,
    pub(crate) base_ejection_time: Option<S<String>>,
    pub(crate) max_ejection_percent: Option<S<i64>>,
    pub(crate) min_health_percent: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClientTls {
    pub(crate) mode: Option<S<String>>,
    pub(crate) client_certificate: Option<S<String>>,
    pub(crate) private_key: Option<S<String>>,
    pub(crate) ca_certificates: Option<S<String>>,
    #[serde(default)]
    pub(crate) subject_alt_names: Vec<S<String>>,
    pub(crate) sni: Option<S<String>>,
    pub(crate) credential_name: Unsupported,
    pub(crate) insecure_skip_verify: Unsupported,
    pub(crate) ca_crl: Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RetryBudget {
    pub(crate) percent: Option<S<f64>>,
    pub(crate) min_retry_concurrency: Option<S<i64>>,
}
