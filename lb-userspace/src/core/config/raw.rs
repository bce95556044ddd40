//! What serde reads, before validation: every field optional (its default
//! lives in the model), numbers as `i64` so a range error can quote the
//! value given, durations and addresses as text. Words of a closed set are
//! read by the model enum's own `Deserialize` through [`Choice`].

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, IntoDeserializer as _, Visitor},
};

use super::model::{
    AdminState, AnnounceMode, FlowsOnDown, Forwarding, HashMode, InitialState, Locality, LogFormat,
    LogLevel, PolicyKind, ProbeKind, Protocol, XdpModeCfg,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub interfaces: Vec<RawInterface>,
    pub pin_path: Option<String>,
    pub state_dir: Option<String>,
    pub allow_no_vips: Option<bool>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub dataplane: RawDataplane,
    #[serde(default)]
    pub health: RawHealthGlobal,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub api: RawApi,
    pub announce: Option<RawAnnounce>,
    pub etcd: Option<RawEtcd>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    pub vips: Vec<RawVip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub source_new_flows_per_sec: Option<i64>,
    pub source_packets_per_sec: Option<i64>,
    pub new_flows_per_sec: Option<i64>,
    pub burst: Option<RawDuration>,
    pub source_prefix_v4: Option<i64>,
    pub source_prefix_v6: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnounce {
    pub bird_socket: Option<String>,
    pub include_file: Option<String>,
    pub protocol: Option<String>,
    pub drain_time: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub prefix: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<Choice<LogLevel>>,
    pub format: Option<Choice<LogFormat>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: Option<String>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: String,
    pub xdp_mode: Option<Choice<XdpModeCfg>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_vips: Option<i64>,
    pub max_backends: Option<i64>,
    pub ring_size: Option<i64>,
    pub conntrack_size: Option<i64>,
    pub conntrack_per_cpu: Option<bool>,
    pub max_acl_entries: Option<i64>,
    pub rate_sources: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    pub hash_seed: Option<i64>,
    pub udp_idle_timeout: Option<RawDuration>,
    pub flood_new_flows_per_sec: Option<i64>,
    pub mtu: Option<i64>,
    pub gue_port: Option<i64>,
    pub encap_source_v4: Option<String>,
    pub encap_source_v6: Option<String>,
    pub gateway_mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthGlobal {
    pub max_concurrent_checks: Option<i64>,
    pub fleet_view: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub socket: Option<String>,
    pub tcp_listen: Option<String>,
    pub token_file: Option<String>,
    pub tokens_file: Option<String>,
    pub tls: Option<RawApiTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub max_vips: Option<i64>,
    pub max_backends: Option<i64>,
    pub max_new_flows_per_sec: Option<i64>,
    pub max_allow_list: Option<i64>,
}

/// A duration as a number of seconds or a string like `1500ms`, `2s`, `5m`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDuration {
    Seconds(f64),
    Text(String),
}

/// A port as a number, or `all`/`any`/`*` for every port.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub name: Option<String>,
    pub address: Option<String>,
    pub port: Option<RawPort>,
    pub protocol: Option<Choice<Protocol>>,
    pub hash: Option<Choice<HashMode>>,
    pub forwarding: Option<Choice<Forwarding>>,
    pub flows_on_backend_down: Option<Choice<FlowsOnDown>>,
    pub icmp_echo: Option<bool>,
    pub tenant: Option<String>,
    pub announce: Option<Choice<AnnounceMode>>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub health_check: RawHealthCheck,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub mode: Option<Choice<PolicyKind>>,
    pub locality: Option<Choice<Locality>>,
    pub overprovisioning: Option<f64>,
    pub cloud_weights: Option<BTreeMap<String, i64>>,
    pub tiers: Option<Vec<BTreeMap<String, String>>>,
    pub min_healthy: Option<f64>,
    pub failback_after: Option<RawDuration>,
    pub panic_threshold: Option<f64>,
    pub drain_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<Choice<ProbeKind>>,
    pub port: Option<i64>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<i64>,
    pub payload: Option<String>,
    pub query: Option<String>,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub jitter: Option<f64>,
    pub initial_state: Option<Choice<InitialState>>,
}

/// A backend as the configuration file's `vips[].backends` and
/// `PUT /v1/vips/{vip}/backends` write it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Backend)]
pub struct RawBackend {
    /// IPv4 or IPv6 address (required).
    #[schema(required = true, value_type = String)]
    pub(super) address: Option<String>,
    /// Health-check port (default: the VIP's port).
    #[schema(minimum = 1, maximum = 65535)]
    pub(super) port: Option<i64>,
    /// A ratio against the other backends (default 100).
    #[schema(minimum = 0, maximum = 65535)]
    pub(super) weight: Option<i64>,
    #[serde(default)]
    pub(super) labels: RawLabels,
    #[schema(value_type = Option<AdminState>)]
    pub(super) state: Option<Choice<AdminState>>,
    #[schema(value_type = Option<Forwarding>)]
    pub(super) forwarding: Option<Choice<Forwarding>>,
    /// UDP destination port of GUE (with `forwarding: gue`).
    #[schema(minimum = 1, maximum = 65535)]
    pub(super) gue_port: Option<i64>,
    /// The backend's MAC address (with `forwarding: l2-dsr`).
    pub(super) mac: Option<String>,
}

/// Where the backend runs, for locality and drills.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BackendLabels)]
pub struct RawLabels {
    pub(super) cloud: Option<String>,
    pub(super) region: Option<String>,
    pub(super) zone: Option<String>,
}

/// A word of a closed set, read by `T`'s own `Deserialize`. A word `T`
/// does not know is kept rather than failing the whole document, so the
/// validator can report it with the field's path and the words `T` does
/// know, beside every other problem of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Choice<T> {
    Known(T),
    Unknown(String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        let parsed: Result<T, de::value::Error> = T::deserialize(word.as_str().into_deserializer());
        Ok(match parsed {
            Ok(t) => Choice::Known(t),
            Err(_) => Choice::Unknown(word),
        })
    }
}

/// The words of a unit-variant enum as its `Deserialize` spells them, in
/// declaration order (serde passes them to `deserialize_enum`).
pub(super) fn words_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(PhantomData<()>);
    #[derive(Debug)]
    struct Found(Option<&'static [&'static str]>);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("variant names")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Found(None)
        }
    }
    impl<'de> Deserializer<'de> for Names {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(None))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(Some(variants)))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }
    match T::deserialize(Names(PhantomData)) {
        Err(Found(Some(v))) => v,
        _ => &[],
    }
}
