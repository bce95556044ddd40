//! The declarative configuration (`/etc/lb/lb.yaml`, YAML or JSON).
//!
//! Two stages: serde reads the file into permissive raw structs
//! (`deny_unknown_fields`, numbers as i64, durations and addresses as
//! strings) with `serde_path_to_error` naming the field of a type error;
//! then [`validate`] checks every value and builds the typed [`Config`],
//! collecting every error with its field path
//! (`vips[2].backends[0].weight: must be 0..=65535, got -1`). Nothing here
//! touches the kernel.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::dataplane::Limits;

/// Where the agent looks by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lb/lb.yaml";
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lb";
pub const DEFAULT_API_SOCKET: &str = "/run/lb/lbd.sock";

/// One problem in a configuration: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `vips[2].backends[0].weight`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A rejected configuration: the source and every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// File name, or a description of the source (`API request`).
    pub source_name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.source_name)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The validated model.

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub node: Node,
    pub interfaces: Vec<Interface>,
    pub pin_path: PathBuf,
    pub limits: LimitsCfg,
    pub dataplane: DataplaneCfg,
    pub health: HealthGlobal,
    pub metrics_listen: Option<SocketAddr>,
    pub api: ApiCfg,
    pub vips: Vec<Vip>,
}

/// This edge host's place in the world; `local-first` prefers backends
/// that share it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub cloud: String,
    pub region: String,
    pub zone: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpModeCfg {
    /// Native XDP in the driver.
    Driver,
    /// Generic (skb) XDP: the explicit fallback for drivers without XDP.
    Generic,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub xdp_mode: XdpModeCfg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimitsCfg {
    pub max_vips: u32,
    pub max_backends: u32,
    pub ring_size: u32,
    pub conntrack_size: u32,
    pub conntrack_per_cpu: bool,
}

impl From<LimitsCfg> for Limits {
    fn from(l: LimitsCfg) -> Self {
        Limits {
            max_vips: l.max_vips,
            max_backends: l.max_backends,
            ring_size: l.ring_size,
            conntrack_size: l.conntrack_size,
            conntrack_per_cpu: l.conntrack_per_cpu,
        }
    }
}

/// An outer source address: `base` with the low `hash_bits` bits taken
/// from the flow hash (0 = always `base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EncapSource<A> {
    pub base: A,
    pub hash_bits: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataplaneCfg {
    pub hash_seed: u32,
    pub udp_idle_timeout: Duration,
    pub flood_new_flows_per_sec: u32,
    pub mtu: u16,
    pub gue_port: u16,
    pub encap_source_v4: EncapSource<Ipv4Addr>,
    pub encap_source_v6: EncapSource<Ipv6Addr>,
    pub gateway_mac: Option<[u8; 6]>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthGlobal {
    /// Probes in flight at once, across all backends.
    pub max_concurrent_checks: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiCfg {
    pub socket: PathBuf,
    pub tcp_listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::maps::PROTO_TCP,
            Protocol::Udp => lb_common::maps::PROTO_UDP,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashMode {
    FiveTuple,
    SourceIp,
    SourceIpDestPort,
}

impl HashMode {
    pub fn code(self) -> u32 {
        match self {
            HashMode::FiveTuple => lb_common::maps::HASH_FIVE_TUPLE,
            HashMode::SourceIp => lb_common::maps::HASH_SRC_IP,
            HashMode::SourceIpDestPort => lb_common::maps::HASH_SRC_IP_DST_PORT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    Ipip,
    Gue,
    L2Dsr,
}

impl Forwarding {
    pub fn code(self) -> u8 {
        match self {
            Forwarding::Ipip => lb_common::maps::FWD_IPIP,
            Forwarding::Gue => lb_common::maps::FWD_GUE,
            Forwarding::L2Dsr => lb_common::maps::FWD_L2_DSR,
        }
    }
}

/// What happens to a failed (or maintenance) backend's established flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowsOnDown {
    /// They stay (the backend may still answer them; a dead one resets).
    Keep,
    /// They are re-steered to the ring's choice on their next packet.
    Move,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    Active,
    /// No new flows; established flows stay until they end or the VIP's
    /// drain timeout.
    Draining,
    /// Out of service now (flows stay or move as `flows_on_backend_down`).
    Maintenance,
}

/// A backend's place in the world.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels {
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
}

/// How close a backend must be to count as local for `local-first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Locality {
    Cloud,
    Region,
    Zone,
}

/// A tier of `active-passive`: backends matching every given label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Selector {
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
}

impl Selector {
    pub fn matches(&self, l: &Labels) -> bool {
        self.cloud.as_ref().is_none_or(|c| *c == l.cloud)
            && self.region.as_ref().is_none_or(|r| *r == l.region)
            && self.zone.as_ref().is_none_or(|z| *z == l.zone)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![];
        if let Some(c) = &self.cloud {
            parts.push(format!("cloud={c}"));
        }
        if let Some(r) = &self.region {
            parts.push(format!("region={r}"));
        }
        if let Some(z) = &self.zone {
            parts.push(format!("zone={z}"));
        }
        write!(f, "{}", parts.join(","))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum PolicyMode {
    LocalFirst {
        locality: Locality,
        overprovisioning: f64,
    },
    ActiveActive {
        cloud_weights: BTreeMap<String, u32>,
        overprovisioning: f64,
    },
    ActivePassive {
        tiers: Vec<Selector>,
        min_healthy: f64,
        failback_after: Duration,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub mode: PolicyMode,
    /// Below this fraction of healthy weight, spread over every backend
    /// (healthy or not) instead of overloading the survivors.
    pub panic_threshold: f64,
    pub drain_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Probe {
    None,
    Tcp,
    Http {
        path: String,
        expect_status: u16,
        host: Option<String>,
    },
    Https {
        path: String,
        expect_status: u16,
        host: Option<String>,
    },
    Udp {
        payload: String,
    },
    Dns {
        query: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Port to probe; default: the backend's port, else the VIP's.
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Each interval varies by ± this fraction.
    pub jitter: f64,
    /// State before the first result: up (don't blackhole on start-up).
    pub initially_up: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vip {
    pub name: String,
    pub address: IpAddr,
    /// 0: every port.
    pub port: u16,
    pub protocol: Protocol,
    pub hash: HashMode,
    pub forwarding: Forwarding,
    pub flows_on_backend_down: FlowsOnDown,
    pub icmp_echo: bool,
    pub policy: Policy,
    pub health_check: HealthCheck,
    pub backends: Vec<BackendCfg>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendCfg {
    pub address: IpAddr,
    pub port: Option<u16>,
    pub weight: u32,
    pub labels: Labels,
    pub state: AdminState,
    pub forwarding: Option<Forwarding>,
    pub gue_port: Option<u16>,
    pub mac: Option<[u8; 6]>,
}

// ---------------------------------------------------------------------------
// Raw serde input.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    pin_path: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    health: RawHealthGlobal,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    vips: Vec<RawVip>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
    cloud: Option<String>,
    region: Option<String>,
    zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    xdp_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_vips: Option<i64>,
    max_backends: Option<i64>,
    ring_size: Option<i64>,
    conntrack_size: Option<i64>,
    conntrack_per_cpu: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    hash_seed: Option<i64>,
    udp_idle_timeout: Option<RawDuration>,
    flood_new_flows_per_sec: Option<i64>,
    mtu: Option<i64>,
    gue_port: Option<i64>,
    encap_source_v4: Option<String>,
    encap_source_v6: Option<String>,
    gateway_mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthGlobal {
    max_concurrent_checks: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<String>,
    tcp_listen: Option<String>,
    token_file: Option<String>,
}

/// A duration as a number of seconds or a string like `1500ms`, `2s`, `5m`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(f64),
    Text(String),
}

/// A port as a number, or `all`/`any`/`*` for every port.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    name: Option<String>,
    address: Option<String>,
    port: Option<RawPort>,
    protocol: Option<String>,
    hash: Option<String>,
    forwarding: Option<String>,
    flows_on_backend_down: Option<String>,
    icmp_echo: Option<bool>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    health_check: RawHealthCheck,
    #[serde(default)]
    backends: Vec<RawBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<String>,
    locality: Option<String>,
    overprovisioning: Option<f64>,
    cloud_weights: Option<BTreeMap<String, i64>>,
    tiers: Option<Vec<BTreeMap<String, String>>>,
    min_healthy: Option<f64>,
    failback_after: Option<RawDuration>,
    panic_threshold: Option<f64>,
    drain_timeout: Option<RawDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    #[serde(rename = "type")]
    kind: Option<String>,
    port: Option<i64>,
    path: Option<String>,
    host: Option<String>,
    expect_status: Option<i64>,
    payload: Option<String>,
    query: Option<String>,
    interval: Option<RawDuration>,
    timeout: Option<RawDuration>,
    rise: Option<i64>,
    fall: Option<i64>,
    jitter: Option<f64>,
    initial_state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    #[serde(default)]
    labels: RawLabels,
    state: Option<String>,
    forwarding: Option<String>,
    gue_port: Option<i64>,
    mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    cloud: Option<String>,
    region: Option<String>,
    zone: Option<String>,
}

// ---------------------------------------------------------------------------
// Parsing entry points.

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        errors: vec![FieldError {
            path: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text, &name)
}

/// Parses YAML (a superset of JSON) and validates it.
pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = deserialize(text, source_name)?;
    validate(raw).map_err(|errors| ConfigError {
        source_name: source_name.into(),
        errors,
    })
}

/// Parses the VIP list of an API request or an etcd value (the same schema
/// as `vips:` entries of the file) in the context of `base`.
pub fn parse_vip(text: &str, source_name: &str, base: &Config) -> Result<Vip, ConfigError> {
    let raw: RawVip = deserialize(text, source_name)?;
    let mut v = Validator::default();
    let vip = v.vip("", &raw, &base.limits);
    if v.errors.is_empty() {
        Ok(vip.expect("no errors implies a VIP"))
    } else {
        Err(ConfigError {
            source_name: source_name.into(),
            errors: v.errors,
        })
    }
}

/// Parses a backend list (API push / etcd) with the same rules as a VIP's
/// `backends:`.
pub fn parse_backends(text: &str, source_name: &str) -> Result<Vec<BackendCfg>, ConfigError> {
    let raw: Vec<RawBackend> = deserialize(text, source_name)?;
    let mut v = Validator::default();
    let backends = v.backends("backends", &raw);
    if v.errors.is_empty() {
        Ok(backends)
    } else {
        Err(ConfigError {
            source_name: source_name.into(),
            errors: v.errors,
        })
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    source_name: &str,
) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError {
            source_name: source_name.into(),
            // serde_yaml's message ends with the line and column: kept.
            errors: vec![FieldError {
                path,
                message: e.inner().to_string(),
            }],
        }
    })
}

// ---------------------------------------------------------------------------
// Validation.

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Is `n` prime? (Maglev's table size must be.)
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n as u64 {
        if (n as u64).is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, path: &str, v: Option<i64>, lo: i64, hi: i64, default: i64) -> i64 {
        match v {
            None => default,
            Some(x) if x < lo || x > hi => {
                self.err(path, format!("must be {lo}..={hi}, got {x}"));
                default
            }
            Some(x) => x,
        }
    }

    fn fraction(&mut self, path: &str, v: Option<f64>, lo: f64, hi: f64, default: f64) -> f64 {
        match v {
            None => default,
            Some(x) if !(lo..=hi).contains(&x) || !x.is_finite() => {
                self.err(path, format!("must be between {lo} and {hi}, got {x}"));
                default
            }
            Some(x) => x,
        }
    }

    fn duration(
        &mut self,
        path: &str,
        v: &Option<RawDuration>,
        min: Duration,
        max: Duration,
        default: Duration,
    ) -> Duration {
        let d = match v {
            None => return default,
            Some(RawDuration::Seconds(s)) if s.is_finite() && *s >= 0.0 => {
                Duration::from_secs_f64(*s)
            }
            Some(RawDuration::Text(t)) => match parse_duration(t) {
                Some(d) => d,
                None => {
                    self.err(
                        path,
                        format!("expected a duration like 500ms, 2s, 5m or 1h, got {t:?}"),
                    );
                    return default;
                }
            },
            Some(RawDuration::Seconds(s)) => {
                self.err(
                    path,
                    format!("must be a non-negative number of seconds, got {s}"),
                );
                return default;
            }
        };
        if d < min || d > max {
            self.err(
                path,
                format!("must be between {min:?} and {max:?}, got {d:?}"),
            );
            return default;
        }
        d
    }

    fn choice<T: Copy>(
        &mut self,
        path: &str,
        v: &Option<String>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(s) = v else { return default };
        match options.iter().find(|(name, _)| *name == s.as_str()) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(
                    path,
                    format!("must be one of {}, got {s:?}", names.join(", ")),
                );
                default
            }
        }
    }

    fn ip(&mut self, path: &str, v: &Option<String>) -> Option<IpAddr> {
        let Some(s) = v else {
            self.err(path, "is required (an IPv4 or IPv6 address)");
            return None;
        };
        match s.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                self.err(path, format!("must be a unicast address, got {s}"));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("expected an IPv4 or IPv6 address, got {s:?}"));
                None
            }
        }
    }

    fn mac(&mut self, path: &str, v: &Option<String>) -> Option<[u8; 6]> {
        let s = v.as_ref()?;
        let m = parse_mac(s);
        if m.is_none() {
            self.err(
                path,
                format!("expected a MAC address like 02:00:00:00:00:01, got {s:?}"),
            );
        }
        m
    }

    fn encap_source<A: std::str::FromStr + Copy>(
        &mut self,
        path: &str,
        v: &Option<String>,
        default: EncapSource<A>,
        bits: u8,
    ) -> EncapSource<A> {
        let Some(s) = v else { return default };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()),
            None => (s.as_str(), Some(bits)),
        };
        match (addr.parse::<A>(), len) {
            (Ok(base), Some(len)) if len <= bits => {
                // At most the low 32 host bits come from the 32-bit hash;
                // higher host bits keep the base's value.
                EncapSource {
                    base,
                    hash_bits: (bits - len).min(32),
                }
            }
            _ => {
                self.err(
                    path,
                    format!(
                        "expected an address or prefix like {}, got {s:?}",
                        if bits == 32 {
                            "172.16.0.0/16"
                        } else {
                            "fd00:db8::/96"
                        }
                    ),
                );
                default
            }
        }
    }

    fn node(&mut self, raw: &RawNode) -> Node {
        let name = raw.name.clone().unwrap_or_else(hostname);
        Node {
            name,
            cloud: raw.cloud.clone().unwrap_or_default(),
            region: raw.region.clone().unwrap_or_default(),
            zone: raw.zone.clone().unwrap_or_default(),
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> LimitsCfg {
        use lb_common::limits::*;
        let max_vips = self.range(
            "limits.max_vips",
            raw.max_vips,
            1,
            MAX_VIPS_LIMIT as i64,
            DEFAULT_MAX_VIPS as i64,
        ) as u32;
        let max_backends = self.range(
            "limits.max_backends",
            raw.max_backends,
            1,
            MAX_BACKENDS_LIMIT as i64,
            DEFAULT_MAX_BACKENDS as i64,
        ) as u32;
        let mut ring_size = self.range(
            "limits.ring_size",
            raw.ring_size,
            7,
            MAX_RING_SIZE as i64,
            DEFAULT_RING_SIZE as i64,
        ) as u32;
        if raw.ring_size.is_some() && !is_prime(ring_size) {
            self.err(
                "limits.ring_size",
                format!("must be a prime number (Maglev), got {ring_size}; e.g. 65537 or 655373"),
            );
            ring_size = DEFAULT_RING_SIZE;
        }
        // The kernel array is indexed with u32: both halves of every VIP's
        // ring must fit.
        if max_vips as u64 * 2 * ring_size as u64 > u32::MAX as u64 / 4 {
            self.err(
                "limits",
                format!("max_vips × 2 × ring_size = {} slots is more than the 1 Gi a ring array may hold", max_vips as u64 * 2 * ring_size as u64),
            );
        }
        let conntrack_size = self.range(
            "limits.conntrack_size",
            raw.conntrack_size,
            1024,
            1 << 28,
            DEFAULT_CONNTRACK_SIZE as i64,
        ) as u32;
        LimitsCfg {
            max_vips,
            max_backends,
            ring_size,
            conntrack_size,
            conntrack_per_cpu: raw.conntrack_per_cpu.unwrap_or(false),
        }
    }

    fn dataplane(&mut self, raw: &RawDataplane) -> DataplaneCfg {
        use lb_common::limits::*;
        let mtu = self.range("dataplane.mtu", raw.mtu, 576, 9216, DEFAULT_MTU as i64) as u16;
        DataplaneCfg {
            hash_seed: self.range(
                "dataplane.hash_seed",
                raw.hash_seed,
                0,
                u32::MAX as i64,
                0x4c42_5345,
            ) as u32,
            udp_idle_timeout: self.duration(
                "dataplane.udp_idle_timeout",
                &raw.udp_idle_timeout,
                Duration::from_millis(100),
                Duration::from_secs(86400),
                Duration::from_secs(DEFAULT_UDP_IDLE_SECS as u64),
            ),
            flood_new_flows_per_sec: self.range(
                "dataplane.flood_new_flows_per_sec",
                raw.flood_new_flows_per_sec,
                0,
                u32::MAX as i64,
                0,
            ) as u32,
            mtu,
            gue_port: self.range(
                "dataplane.gue_port",
                raw.gue_port,
                1,
                65535,
                DEFAULT_GUE_PORT as i64,
            ) as u16,
            encap_source_v4: self.encap_source(
                "dataplane.encap_source_v4",
                &raw.encap_source_v4,
                EncapSource {
                    base: Ipv4Addr::new(172, 16, 0, 0),
                    hash_bits: 16,
                },
                32,
            ),
            encap_source_v6: self.encap_source(
                "dataplane.encap_source_v6",
                &raw.encap_source_v6,
                EncapSource {
                    base: "fd00:4c42::".parse().expect("literal"),
                    hash_bits: 32,
                },
                128,
            ),
            gateway_mac: self.mac("dataplane.gateway_mac", &raw.gateway_mac),
        }
    }

    fn policy(&mut self, path: &str, raw: &RawPolicy) -> Policy {
        let mode_name = raw.mode.clone().unwrap_or_else(|| "local-first".into());
        let overprovisioning = self.fraction(
            &join(path, "overprovisioning"),
            raw.overprovisioning,
            1.0,
            10.0,
            1.4,
        );
        let mode = match mode_name.as_str() {
            "local-first" => PolicyMode::LocalFirst {
                locality: self.choice(
                    &join(path, "locality"),
                    &raw.locality,
                    &[
                        ("cloud", Locality::Cloud),
                        ("region", Locality::Region),
                        ("zone", Locality::Zone),
                    ],
                    Locality::Region,
                ),
                overprovisioning,
            },
            "active-active" => {
                let mut cloud_weights = BTreeMap::new();
                match &raw.cloud_weights {
                    None => self.err(
                        join(path, "cloud_weights"),
                        "is required for active-active (e.g. {aws: 70, gcp: 30})",
                    ),
                    Some(w) if w.is_empty() => {
                        self.err(join(path, "cloud_weights"), "must name at least one cloud")
                    }
                    Some(w) => {
                        for (cloud, weight) in w {
                            let p = format!("{}.{cloud}", join(path, "cloud_weights"));
                            let weight = self.range(&p, Some(*weight), 0, 1_000_000, 0) as u32;
                            cloud_weights.insert(cloud.clone(), weight);
                        }
                        if cloud_weights.values().all(|w| *w == 0) {
                            self.err(
                                join(path, "cloud_weights"),
                                "at least one cloud needs a weight above 0",
                            );
                        }
                    }
                }
                PolicyMode::ActiveActive {
                    cloud_weights,
                    overprovisioning,
                }
            }
            "active-passive" => {
                let mut tiers = vec![];
                match &raw.tiers {
                    None => self.err(
                        join(path, "tiers"),
                        "is required for active-passive (an ordered list of label selectors)",
                    ),
                    Some(t) if t.is_empty() => {
                        self.err(join(path, "tiers"), "must have at least one tier")
                    }
                    Some(t) => {
                        for (i, sel) in t.iter().enumerate() {
                            let p = format!("{}[{i}]", join(path, "tiers"));
                            let mut s = Selector::default();
                            for (k, v) in sel {
                                match k.as_str() {
                                    "cloud" => s.cloud = Some(v.clone()),
                                    "region" => s.region = Some(v.clone()),
                                    "zone" => s.zone = Some(v.clone()),
                                    other => self.err(
                                        format!("{p}.{other}"),
                                        "unknown label: use cloud, region or zone",
                                    ),
                                }
                            }
                            if s == Selector::default() && sel.is_empty() {
                                self.err(&p, "a tier needs at least one of cloud, region, zone");
                            }
                            tiers.push(s);
                        }
                    }
                }
                PolicyMode::ActivePassive {
                    tiers,
                    min_healthy: self.fraction(
                        &join(path, "min_healthy"),
                        raw.min_healthy,
                        0.0,
                        1.0,
                        0.0,
                    ),
                    failback_after: self.duration(
                        &join(path, "failback_after"),
                        &raw.failback_after,
                        Duration::ZERO,
                        Duration::from_secs(86400),
                        Duration::from_secs(30),
                    ),
                }
            }
            other => {
                self.err(
                    join(path, "mode"),
                    format!(
                        "must be one of local-first, active-active, active-passive, got {other:?}"
                    ),
                );
                PolicyMode::LocalFirst {
                    locality: Locality::Region,
                    overprovisioning,
                }
            }
        };
        if !matches!(mode, PolicyMode::LocalFirst { .. }) && raw.locality.is_some() {
            self.err(
                join(path, "locality"),
                format!("only applies to local-first, not {mode_name}"),
            );
        }
        if !matches!(mode, PolicyMode::ActiveActive { .. }) && raw.cloud_weights.is_some() {
            self.err(
                join(path, "cloud_weights"),
                format!("only applies to active-active, not {mode_name}"),
            );
        }
        if !matches!(mode, PolicyMode::ActivePassive { .. }) && raw.tiers.is_some() {
            self.err(
                join(path, "tiers"),
                format!("only applies to active-passive, not {mode_name}"),
            );
        }
        Policy {
            mode,
            panic_threshold: self.fraction(
                &join(path, "panic_threshold"),
                raw.panic_threshold,
                0.0,
                1.0,
                0.5,
            ),
            drain_timeout: self.duration(
                &join(path, "drain_timeout"),
                &raw.drain_timeout,
                Duration::ZERO,
                Duration::from_secs(7 * 86400),
                Duration::from_secs(300),
            ),
        }
    }

    fn health_check(&mut self, path: &str, raw: &RawHealthCheck) -> HealthCheck {
        let kind = raw.kind.clone().unwrap_or_else(|| "tcp".into());
        let status = |v: &mut Self| {
            v.range(
                &join(path, "expect_status"),
                raw.expect_status,
                100,
                599,
                200,
            ) as u16
        };
        let http_path = raw.path.clone().unwrap_or_else(|| "/".into());
        if !http_path.starts_with('/') {
            self.err(
                join(path, "path"),
                format!("must start with /, got {http_path:?}"),
            );
        }
        let probe = match kind.as_str() {
            "none" => Probe::None,
            "tcp" => Probe::Tcp,
            "http" => Probe::Http {
                path: http_path,
                expect_status: status(self),
                host: raw.host.clone(),
            },
            "https" => Probe::Https {
                path: http_path,
                expect_status: status(self),
                host: raw.host.clone(),
            },
            "udp" => Probe::Udp {
                payload: raw.payload.clone().unwrap_or_else(|| "ping".into()),
            },
            "dns" => Probe::Dns {
                query: raw.query.clone().unwrap_or_else(|| "health.lb.".into()),
            },
            other => {
                self.err(
                    join(path, "type"),
                    format!("must be one of none, tcp, http, https, udp, dns, got {other:?}"),
                );
                Probe::Tcp
            }
        };
        let interval = self.duration(
            &join(path, "interval"),
            &raw.interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
            Duration::from_secs(2),
        );
        let timeout = self.duration(
            &join(path, "timeout"),
            &raw.timeout,
            Duration::from_millis(10),
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        if timeout > interval {
            self.err(
                join(path, "timeout"),
                format!("must not exceed the interval ({interval:?}), got {timeout:?}"),
            );
        }
        HealthCheck {
            probe,
            port: raw
                .port
                .map(|p| self.range(&join(path, "port"), Some(p), 1, 65535, 1) as u16),
            interval,
            timeout,
            rise: self.range(&join(path, "rise"), raw.rise, 1, 100, 2) as u32,
            fall: self.range(&join(path, "fall"), raw.fall, 1, 100, 3) as u32,
            jitter: self.fraction(&join(path, "jitter"), raw.jitter, 0.0, 0.5, 0.1),
            initially_up: self.choice(
                &join(path, "initial_state"),
                &raw.initial_state,
                &[("up", true), ("down", false)],
                true,
            ),
        }
    }

    fn backends(&mut self, path: &str, raw: &[RawBackend]) -> Vec<BackendCfg> {
        let mut seen = BTreeSet::new();
        let mut out = vec![];
        for (i, b) in raw.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let address = self.ip(&join(&p, "address"), &b.address);
            if let Some(a) = address
                && !seen.insert(a)
            {
                self.err(
                    join(&p, "address"),
                    format!("{a} is listed twice in this VIP"),
                );
            }
            let port = b
                .port
                .map(|x| self.range(&join(&p, "port"), Some(x), 1, 65535, 1) as u16);
            let weight = self.range(&join(&p, "weight"), b.weight, 0, 65535, 100) as u32;
            let state = self.choice(
                &join(&p, "state"),
                &b.state,
                &[
                    ("active", AdminState::Active),
                    ("draining", AdminState::Draining),
                    ("maintenance", AdminState::Maintenance),
                ],
                AdminState::Active,
            );
            let forwarding = b
                .forwarding
                .as_ref()
                .map(|_| self.forwarding(&join(&p, "forwarding"), &b.forwarding));
            let gue_port = b
                .gue_port
                .map(|x| self.range(&join(&p, "gue_port"), Some(x), 1, 65535, 6080) as u16);
            let mac = self.mac(&join(&p, "mac"), &b.mac);
            let labels = Labels {
                cloud: b.labels.cloud.clone().unwrap_or_default(),
                region: b.labels.region.clone().unwrap_or_default(),
                zone: b.labels.zone.clone().unwrap_or_default(),
            };
            if let Some(address) = address {
                out.push(BackendCfg {
                    address,
                    port,
                    weight,
                    labels,
                    state,
                    forwarding,
                    gue_port,
                    mac,
                });
            }
        }
        out
    }

    fn forwarding(&mut self, path: &str, v: &Option<String>) -> Forwarding {
        self.choice(
            path,
            v,
            &[
                ("ipip", Forwarding::Ipip),
                ("gue", Forwarding::Gue),
                ("l2-dsr", Forwarding::L2Dsr),
            ],
            Forwarding::Ipip,
        )
    }

    fn vip(&mut self, path: &str, raw: &RawVip, limits: &LimitsCfg) -> Option<Vip> {
        let errors_before = self.errors.len();
        let address = self.ip(&join(path, "address"), &raw.address);
        let port = match &raw.port {
            None => {
                self.err(
                    join(path, "port"),
                    "is required: a port number, or \"all\" for every port",
                );
                0
            }
            Some(RawPort::Number(n)) => {
                self.range(&join(path, "port"), Some(*n), 1, 65535, 1) as u16
            }
            Some(RawPort::Text(t)) if ["all", "any", "*"].contains(&t.as_str()) => 0,
            Some(RawPort::Text(t)) => {
                self.err(
                    join(path, "port"),
                    format!("expected a port number or \"all\", got {t:?}"),
                );
                0
            }
        };
        let protocol = self.choice(
            &join(path, "protocol"),
            &raw.protocol,
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            Protocol::Tcp,
        );
        let hash = self.choice(
            &join(path, "hash"),
            &raw.hash,
            &[
                ("five-tuple", HashMode::FiveTuple),
                ("source-ip", HashMode::SourceIp),
                ("source-ip-dest-port", HashMode::SourceIpDestPort),
            ],
            HashMode::FiveTuple,
        );
        let forwarding = self.forwarding(&join(path, "forwarding"), &raw.forwarding);
        let flows_on_backend_down = self.choice(
            &join(path, "flows_on_backend_down"),
            &raw.flows_on_backend_down,
            &[("keep", FlowsOnDown::Keep), ("move", FlowsOnDown::Move)],
            FlowsOnDown::Keep,
        );
        let policy = self.policy(&join(path, "policy"), &raw.policy);
        let health_check = self.health_check(&join(path, "health_check"), &raw.health_check);
        let backends = self.backends(&join(path, "backends"), &raw.backends);
        if backends.len() as u32 > limits.max_backends {
            self.err(
                join(path, "backends"),
                format!(
                    "{} backends exceed limits.max_backends ({})",
                    backends.len(),
                    limits.max_backends
                ),
            );
        }
        if forwarding == Forwarding::L2Dsr
            || backends
                .iter()
                .any(|b| b.forwarding == Some(Forwarding::L2Dsr))
        {
            for (i, b) in backends.iter().enumerate() {
                let fwd = b.forwarding.unwrap_or(forwarding);
                if fwd == Forwarding::L2Dsr
                    && let Some(a) = address
                    && a.is_ipv4() != b.address.is_ipv4()
                {
                    self.err(
                        format!("{}[{i}].address", join(path, "backends")),
                        "L2 DSR keeps the VIP as destination: the backend must be of the VIP's address family",
                    );
                }
            }
        }
        let name = raw.name.clone().unwrap_or_else(|| match address {
            Some(a) => format!(
                "{}:{}/{}",
                a,
                if port == 0 {
                    "all".to_string()
                } else {
                    port.to_string()
                },
                if protocol == Protocol::Tcp {
                    "tcp"
                } else {
                    "udp"
                }
            ),
            None => String::new(),
        });
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Vip {
            name,
            address: address?,
            port,
            protocol,
            hash,
            forwarding,
            flows_on_backend_down,
            icmp_echo: raw.icmp_echo.unwrap_or(true),
            policy,
            health_check,
            backends,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "lb".into())
}

fn validate(raw: RawConfig) -> Result<Config, Vec<FieldError>> {
    let mut v = Validator::default();
    let node = v.node(&raw.node);
    let mut interfaces = vec![];
    let mut names = BTreeSet::new();
    for (i, iface) in raw.interfaces.iter().enumerate() {
        let p = format!("interfaces[{i}]");
        if iface.name.is_empty() || iface.name.len() > 15 || iface.name.contains(['/', ' ']) {
            v.err(
                join(&p, "name"),
                format!(
                    "must be a Linux interface name (1-15 characters), got {:?}",
                    iface.name
                ),
            );
        }
        if !names.insert(iface.name.clone()) {
            v.err(join(&p, "name"), format!("{} is listed twice", iface.name));
        }
        let xdp_mode = v.choice(
            &join(&p, "xdp_mode"),
            &iface.xdp_mode,
            &[
                ("driver", XdpModeCfg::Driver),
                ("generic", XdpModeCfg::Generic),
            ],
            XdpModeCfg::Driver,
        );
        interfaces.push(Interface {
            name: iface.name.clone(),
            xdp_mode,
        });
    }
    let limits = v.limits(&raw.limits);
    let dataplane = v.dataplane(&raw.dataplane);
    let max_concurrent_checks = v.range(
        "health.max_concurrent_checks",
        raw.health.max_concurrent_checks,
        1,
        10_000,
        64,
    ) as usize;
    let metrics_listen = raw
        .metrics
        .listen
        .as_ref()
        .and_then(|s| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    "metrics.listen",
                    format!("expected address:port like 127.0.0.1:9100, got {s:?}"),
                );
                None
            }
        });
    let tcp_listen = raw
        .api
        .tcp_listen
        .as_ref()
        .and_then(|s| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                v.err(
                    "api.tcp_listen",
                    format!("expected address:port like 127.0.0.1:9180, got {s:?}"),
                );
                None
            }
        });
    if tcp_listen.is_some() && raw.api.token_file.is_none() {
        v.err("api.token_file", "is required when api.tcp_listen is set: the TCP API only serves requests with a bearer token");
    }
    let api = ApiCfg {
        socket: PathBuf::from(
            raw.api
                .socket
                .clone()
                .unwrap_or_else(|| DEFAULT_API_SOCKET.into()),
        ),
        tcp_listen,
        token_file: raw.api.token_file.as_ref().map(PathBuf::from),
    };

    let mut vips = vec![];
    let mut keys = BTreeMap::new();
    let mut vip_names = BTreeSet::new();
    for (i, rv) in raw.vips.iter().enumerate() {
        let p = format!("vips[{i}]");
        if let Some(vip) = v.vip(&p, rv, &limits) {
            let key = (vip.address, vip.port, vip.protocol);
            if let Some(other) = keys.insert(key, i) {
                v.err(
                    join(&p, "address"),
                    format!(
                        "{}:{} {:?} is also vips[{other}]",
                        vip.address, vip.port, vip.protocol
                    ),
                );
            }
            if !vip_names.insert(vip.name.clone()) {
                v.err(
                    join(&p, "name"),
                    format!("{:?} is used by another VIP", vip.name),
                );
            }
            vips.push(vip);
        }
    }
    if raw.vips.len() as u32 > limits.max_vips {
        v.err(
            "vips",
            format!(
                "{} VIPs exceed limits.max_vips ({})",
                raw.vips.len(),
                limits.max_vips
            ),
        );
    }
    let total_backends: usize = vips.iter().map(|v| v.backends.len()).sum();
    if total_backends as u64 > limits.max_backends as u64 {
        v.err(
            "vips",
            format!(
                "{total_backends} backends in all exceed limits.max_backends ({})",
                limits.max_backends
            ),
        );
    }
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(Config {
        node,
        interfaces,
        pin_path: PathBuf::from(raw.pin_path.unwrap_or_else(|| DEFAULT_PIN_PATH.into())),
        limits,
        dataplane,
        health: HealthGlobal {
            max_concurrent_checks,
        },
        metrics_listen,
        api,
        vips,
    })
}

#[cfg(test)]
mod tests;
