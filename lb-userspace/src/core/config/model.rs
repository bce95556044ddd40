//! The validated configuration model. Every type's `Default` holds the
//! documented default (docs/OPERATIONS.md, "Configuration reference"); the
//! validator falls back to these values, so a default lives in one place.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use lb_common::limits::{
    DEFAULT_CONNTRACK_SIZE, DEFAULT_GUE_PORT, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_VIPS, DEFAULT_MTU,
    DEFAULT_RING_SIZE, DEFAULT_UDP_IDLE_SECS,
};
use serde::{Deserialize, Serialize};

/// Where the agent looks by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/lb/lb.yaml";
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lb";
pub const DEFAULT_API_SOCKET: &str = "/run/lb/lbd.sock";
/// What the agent keeps across restarts (health, overrides, the last etcd
/// revision): see OPERATIONS.md, "What survives a restart".
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lb";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub node: Node,
    pub interfaces: Vec<Interface>,
    pub pin_path: PathBuf,
    pub state_dir: PathBuf,
    pub limits: Limits,
    pub dataplane: DataplaneCfg,
    pub health: HealthGlobal,
    pub metrics_listen: Option<SocketAddr>,
    pub api: ApiCfg,
    /// Route control through BIRD; `None`: lbd announces nothing.
    pub announce: Option<AnnounceCfg>,
    /// The etcd feed; `None`: VIPs come from the file and the API only.
    pub etcd: Option<EtcdCfg>,
    /// What the agent logs and how.
    pub log: LogCfg,
    /// A reload may leave the agent without any VIP (otherwise refused:
    /// an empty or cut file must not take every service down).
    pub allow_no_vips: bool,
    /// Quotas of the tenants VIPs belong to ([`DEFAULT_TENANT`] needs no
    /// entry and has none).
    pub tenants: BTreeMap<String, TenantQuota>,
    pub vips: Vec<Vip>,
}

/// The tenant of a VIP that names none.
pub const DEFAULT_TENANT: &str = "default";

/// What one tenant's VIPs may add up to (`None`: no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantQuota {
    pub max_vips: Option<u32>,
    pub max_backends: Option<u32>,
    /// The sum of its VIPs' `rate_limit.new_flows_per_sec` (each VIP of
    /// such a tenant must set one).
    pub max_new_flows_per_sec: Option<u32>,
    /// Allow and deny entries over all its VIPs.
    pub max_allow_list: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node: Node::default(),
            interfaces: vec![],
            pin_path: DEFAULT_PIN_PATH.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            limits: Limits::default(),
            dataplane: DataplaneCfg::default(),
            health: HealthGlobal::default(),
            metrics_listen: None,
            api: ApiCfg::default(),
            announce: None,
            etcd: None,
            log: LogCfg::default(),
            allow_no_vips: false,
            tenants: BTreeMap::new(),
            vips: vec![],
        }
    }
}

/// This edge host's place in the world; `local-first` prefers backends
/// that share it. The name defaults to the host name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub cloud: String,
    pub region: String,
    pub zone: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpModeCfg {
    /// Native XDP, falling back to generic XDP (with a warning) when the
    /// driver refuses it.
    #[default]
    Auto,
    /// Native XDP in the driver, or fail.
    Driver,
    /// Generic (skb) XDP: for drivers without XDP (much slower).
    Generic,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub xdp_mode: XdpModeCfg,
}

/// Map sizes, fixed when the maps are created (a change needs a restart
/// with `--reset-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub max_vips: u32,
    pub max_backends: u32,
    /// Maglev table size M (prime).
    pub ring_size: u32,
    pub conntrack_size: u32,
    /// Per-CPU connection table instead of the shared one.
    pub conntrack_per_cpu: bool,
    /// Allow/deny entries over all VIPs (the map holds two generations of
    /// a list while it changes).
    pub max_acl_entries: u32,
    /// Source prefixes the rate limiter tracks (LRU).
    pub rate_sources: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_vips: DEFAULT_MAX_VIPS,
            max_backends: DEFAULT_MAX_BACKENDS,
            ring_size: DEFAULT_RING_SIZE,
            conntrack_size: DEFAULT_CONNTRACK_SIZE,
            conntrack_per_cpu: false,
            max_acl_entries: lb_common::limits::DEFAULT_MAX_ACL_ENTRIES,
            rate_sources: lb_common::limits::DEFAULT_RATE_SOURCES,
        }
    }
}

impl Limits {
    /// Slots of the ring table: two halves per VIP.
    pub fn ring_entries(&self) -> u64 {
        self.max_vips as u64 * 2 * self.ring_size as u64
    }
}

/// An outer source address: `base` with the low `hash_bits` bits taken
/// from the flow hash (0 = always `base`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EncapSource<A> {
    pub base: A,
    pub hash_bits: u8,
}

/// Knobs the data path reads at run time (the `CONFIG` map).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataplaneCfg {
    /// Seed of the flow hash and of the Maglev permutations: the same on
    /// every LB host of a fleet, so they all steer a flow alike.
    pub hash_seed: u32,
    pub udp_idle_timeout: Duration,
    /// New flows per second per CPU recorded in the connection table
    /// (0 = no limit); beyond it, flows are forwarded but not recorded.
    pub flood_new_flows_per_sec: u32,
    pub mtu: u16,
    pub gue_port: u16,
    pub encap_source_v4: EncapSource<Ipv4Addr>,
    pub encap_source_v6: EncapSource<Ipv6Addr>,
    pub gateway_mac: Option<[u8; 6]>,
}

impl Default for DataplaneCfg {
    fn default() -> Self {
        Self {
            hash_seed: 0x4c42_5345,
            udp_idle_timeout: Duration::from_secs(DEFAULT_UDP_IDLE_SECS as u64),
            flood_new_flows_per_sec: 0,
            mtu: DEFAULT_MTU,
            gue_port: DEFAULT_GUE_PORT,
            encap_source_v4: EncapSource {
                base: Ipv4Addr::new(172, 16, 0, 0),
                hash_bits: 16,
            },
            encap_source_v6: EncapSource {
                base: Ipv6Addr::new(0xfd00, 0x4c42, 0, 0, 0, 0, 0, 0),
                hash_bits: 32,
            },
            gateway_mac: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthGlobal {
    /// Probes in flight at once, across all backends.
    pub max_concurrent_checks: usize,
    /// Use the fleet's agreed health view (published in etcd by every
    /// agent) instead of this host's probes alone, so LB hosts do not
    /// build different tables while a backend fails. Needs `--etcd`.
    pub fleet_view: bool,
}

impl Default for HealthGlobal {
    fn default() -> Self {
        Self {
            max_concurrent_checks: 64,
            fleet_view: false,
        }
    }
}

/// Route control: the VIP addresses this host announces through its BIRD.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnnounceCfg {
    /// BIRD's control socket (`birdc -s`).
    pub bird_socket: PathBuf,
    /// The file lbd writes its static protocols into; BIRD's configuration
    /// `include`s it.
    pub include_file: PathBuf,
    /// Name prefix of those protocols (`<protocol>4`, `<protocol>6`), for
    /// the BGP export filter.
    pub protocol: String,
    /// On stop: withdraw, then keep forwarding this long for the flows
    /// routers still send, then exit.
    pub drain_time: Duration,
}

impl Default for AnnounceCfg {
    fn default() -> Self {
        Self {
            bird_socket: "/run/bird/bird.ctl".into(),
            include_file: "/var/lib/lb-bird/vips.conf".into(),
            protocol: "lb_vips".into(),
            drain_time: Duration::from_secs(5),
        }
    }
}

/// The etcd feed (`etcd:`): VIPs and backend lists under `prefix`, and
/// the agent's own records beside them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdCfg {
    /// `http://host:port` or `https://host:port` client URLs, tried in turn.
    pub endpoints: Vec<String>,
    /// Key prefix (VIPs under `PREFIX/vips/`).
    pub prefix: String,
    /// CA certificate (PEM) etcd's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user (with `auth enable`); the password comes from a file.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl EtcdCfg {
    pub const DEFAULT_PREFIX: &str = "/lb";

    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: Self::DEFAULT_PREFIX.into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
        }
    }
}

/// How much the agent logs (`log.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How log lines are written when the journal is not there
/// (`log.format`); under systemd they go to journald as structured
/// entries either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogCfg {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// Who may reach a VIP and how fast (`vips[].allow`, `deny`, `rate_limit`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Access {
    /// Sources allowed (empty: every source not denied).
    pub allow: Vec<crate::core::prefix::Prefix>,
    /// Sources refused (the longest matching entry decides).
    pub deny: Vec<crate::core::prefix::Prefix>,
    pub rate_limit: RateLimit,
}

impl Access {
    /// Whether the data path has anything to check for this VIP.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.rate_limit.is_off()
    }
}

/// Rate limits of one VIP; `None`: no limit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateLimit {
    /// New flows per second from one source prefix.
    pub source_new_flows_per_sec: Option<u32>,
    /// Packets per second from one source prefix.
    pub source_packets_per_sec: Option<u32>,
    /// New flows per second of the whole VIP.
    pub new_flows_per_sec: Option<u32>,
    /// How much above the rate a short burst may go, as time at the rate.
    pub burst: Duration,
    /// What a source address counts as for the per-source limits.
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            source_new_flows_per_sec: None,
            source_packets_per_sec: None,
            new_flows_per_sec: None,
            burst: Duration::from_millis(100),
            source_prefix_v4: 32,
            source_prefix_v6: 64,
        }
    }
}

impl RateLimit {
    pub fn is_off(&self) -> bool {
        self.source_new_flows_per_sec.is_none()
            && self.source_packets_per_sec.is_none()
            && self.new_flows_per_sec.is_none()
    }
}

/// When a VIP's address is announced (`vips[].announce`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnounceMode {
    /// While the VIP has healthy capacity (the policy's view).
    #[default]
    WhenHealthy,
    /// Whenever the agent runs with its configuration applied.
    Always,
    /// Never (announced by other means, or not at all).
    Never,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiCfg {
    pub socket: PathBuf,
    pub tcp_listen: Option<SocketAddr>,
    /// One admin token (the file holds only the token).
    pub token_file: Option<PathBuf>,
    /// Tokens with ids, roles and tenants (see `core::access`).
    pub tokens_file: Option<PathBuf>,
    /// HTTPS on the TCP listener.
    pub tls: Option<ApiTls>,
}

/// Certificate files of the TCP API, re-read when they change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ApiCfg {
    fn default() -> Self {
        Self {
            socket: DEFAULT_API_SOCKET.into(),
            tcp_listen: None,
            token_file: None,
            tokens_file: None,
            tls: None,
        }
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A VIP's identity in the kernel: (address, port, protocol).
pub type VipIdent = (IpAddr, u16, Protocol);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashMode {
    #[default]
    FiveTuple,
    SourceIp,
    SourceIpDestPort,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    #[default]
    Ipip,
    Gue,
    L2Dsr,
}

/// What happens to a failed (or maintenance) backend's established flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowsOnDown {
    /// They stay (the backend may still answer them; a dead one resets).
    #[default]
    Keep,
    /// They are re-steered to the ring's choice on their next packet.
    Move,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AdminState {
    #[default]
    Active,
    /// No new flows; established flows stay until they end or the VIP's
    /// drain timeout.
    Draining,
    /// Out of service now (flows stay or move as `flows_on_backend_down`).
    Maintenance,
}

/// A backend's place in the world.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub struct Labels {
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
}

/// How close a backend must be to count as local for `local-first`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Locality {
    Cloud,
    #[default]
    Region,
    Zone,
}

impl Locality {
    pub fn name(self) -> &'static str {
        match self {
            Locality::Cloud => "cloud",
            Locality::Region => "region",
            Locality::Zone => "zone",
        }
    }
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
        let parts: Vec<String> = [
            ("cloud", &self.cloud),
            ("region", &self.region),
            ("zone", &self.zone),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// The name of a policy mode (`policy.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    #[default]
    LocalFirst,
    ActiveActive,
    ActivePassive,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::LocalFirst => "local-first",
            PolicyKind::ActiveActive => "active-active",
            PolicyKind::ActivePassive => "active-passive",
        }
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

impl PolicyMode {
    /// Capacity headroom assumed of healthy backends before traffic spills.
    pub const DEFAULT_OVERPROVISIONING: f64 = 1.4;
    /// active-passive: healthy fraction a tier needs to take traffic.
    pub const DEFAULT_MIN_HEALTHY: f64 = 0.0;
    /// active-passive: how long a better tier must stay healthy before
    /// traffic fails back to it.
    pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(30);

    pub fn kind(&self) -> PolicyKind {
        match self {
            PolicyMode::LocalFirst { .. } => PolicyKind::LocalFirst,
            PolicyMode::ActiveActive { .. } => PolicyKind::ActiveActive,
            PolicyMode::ActivePassive { .. } => PolicyKind::ActivePassive,
        }
    }
}

impl Default for PolicyMode {
    fn default() -> Self {
        PolicyMode::LocalFirst {
            locality: Locality::default(),
            overprovisioning: Self::DEFAULT_OVERPROVISIONING,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub mode: PolicyMode,
    /// Below this fraction of healthy weight, spread over every backend
    /// (healthy or not) instead of overloading the survivors.
    pub panic_threshold: f64,
    pub drain_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: PolicyMode::default(),
            panic_threshold: 0.5,
            drain_timeout: Duration::from_secs(300),
        }
    }
}

/// The name of a probe type (`health_check.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    None,
    #[default]
    Tcp,
    Http,
    Https,
    Udp,
    Dns,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Probe {
    None,
    #[default]
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

impl Probe {
    pub const DEFAULT_HTTP_PATH: &str = "/";
    pub const DEFAULT_EXPECT_STATUS: u16 = 200;
    pub const DEFAULT_UDP_PAYLOAD: &str = "ping";
    pub const DEFAULT_DNS_QUERY: &str = "health.lb.";
}

/// A backend's health before its first check result
/// (`health_check.initial_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    /// Up: a restart or a new backend does not blackhole traffic.
    #[default]
    Up,
    Down,
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
    /// State before the first result.
    pub initially_up: bool,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: Probe::default(),
            port: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            jitter: 0.1,
            initially_up: InitialState::default() == InitialState::Up,
        }
    }
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
    /// Whose VIP it is (API scoping, quotas, metrics).
    pub tenant: String,
    /// When its address is announced (with `announce:` configured).
    pub announce: AnnounceMode,
    /// Who may reach it and how fast.
    pub access: Access,
    pub policy: Policy,
    pub health_check: HealthCheck,
    pub backends: Vec<BackendCfg>,
}

impl Vip {
    /// A VIP with every setting at its default and no backends, named
    /// `address:port/protocol`.
    pub fn new(address: IpAddr, port: u16, protocol: Protocol) -> Self {
        Self {
            name: default_vip_name(address, port, protocol),
            address,
            port,
            protocol,
            hash: HashMode::default(),
            forwarding: Forwarding::default(),
            flows_on_backend_down: FlowsOnDown::default(),
            icmp_echo: true,
            tenant: DEFAULT_TENANT.into(),
            announce: AnnounceMode::default(),
            access: Access::default(),
            policy: Policy::default(),
            health_check: HealthCheck::default(),
            backends: vec![],
        }
    }

    pub fn ident(&self) -> VipIdent {
        (self.address, self.port, self.protocol)
    }
}

/// `address:port/protocol`, `all` for an all-ports VIP: the name of a VIP
/// configured without one, and how `lbctl` names VIPs the agent does not.
pub fn default_vip_name(address: IpAddr, port: u16, protocol: Protocol) -> String {
    let port = if port == 0 {
        "all".to_string()
    } else {
        port.to_string()
    };
    format!("{address}:{port}/{}", protocol.name())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

impl BackendCfg {
    pub const DEFAULT_WEIGHT: u32 = 100;

    /// A backend with every setting at its default.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            port: None,
            weight: Self::DEFAULT_WEIGHT,
            labels: Labels::default(),
            state: AdminState::default(),
            forwarding: None,
            gue_port: None,
            mac: None,
        }
    }
}
