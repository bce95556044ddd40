//! The command line: global flags and one subcommand per verb.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect and steer the lb load balancer.
#[derive(Parser)]
#[command(name = "lbctl", version)]
pub struct Cli {
    /// The agent's API socket.
    #[arg(long, global = true, default_value = lb::core::config::DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// Talk to the agent's TCP API instead: https://HOST:PORT (with
    /// --ca-file) or HOST:PORT for plain HTTP on loopback (needs
    /// --token-file).
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// File holding the bearer token for --api.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) the agent's HTTPS certificate must chain to.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for an agent that requires mTLS.
    #[arg(long, global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// bpffs directory of the pinned data path.
    #[arg(long, global = true, default_value = lb::core::config::DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// The agent at a glance: version and uptime, the interfaces the data
    /// path is attached to and how, the connection table's fill, the etcd
    /// feed, the route control, healthy backends, and every warning.
    ///
    /// Example: `lbctl status` or `lbctl status -o json | jq .warnings`
    Status,
    /// This lbctl's version and the running agent's.
    Version,
    /// VIPs.
    Vip {
        #[command(subcommand)]
        cmd: VipCmd,
    },
    /// Backends.
    Backend {
        #[command(subcommand)]
        cmd: BackendCmd,
    },
    /// Maglev tables.
    Ring {
        #[command(subcommand)]
        cmd: RingCmd,
    },
    /// The connection table.
    Conntrack {
        #[command(subcommand)]
        cmd: ConntrackCmd,
    },
    /// Per-VIP and per-backend rates and the data path's reasons by name.
    ///
    /// Example: `lbctl stats --watch -o json` (one JSON object per line and
    /// interval, for a pipe)
    Stats {
        /// Refresh every --interval until interrupted.
        #[arg(long)]
        watch: bool,
        /// Sampling interval in seconds.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// A live full-screen view of every VIP and backend: packets, bits and
    /// new flows per second, health, each backend's share of its VIP's new
    /// flows beside the share the policy intends. Keys: q quit, s next
    /// sort, p/b/n/h/a sort by pps/bps/new flows/share/backend, r reverse.
    ///
    /// Example: `lbctl top --interval 2`
    Top {
        /// Seconds between readings.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Which backend a flow goes to and why, computed by the loaded program.
    Explain {
        /// Client address and port, e.g. 198.51.100.7:40000 or [2001:db8::7]:40000.
        src: SocketAddr,
        /// VIP address and port.
        dst: SocketAddr,
        /// tcp or udp.
        proto: String,
        /// Ask about a new connection (TCP SYN) instead of an established one.
        #[arg(long)]
        syn: bool,
        /// Interface the packet arrives on (default: the first attached one).
        #[arg(long)]
        iface: Option<String>,
    },
    /// Stop new flows to a backend; established ones stay until they end or
    /// the VIP's drain timeout.
    ///
    /// Example: `lbctl drain web 10.20.0.11`
    Drain {
        #[command(flatten)]
        target: BackendRef,
    },
    /// Take a backend back into service.
    ///
    /// Example: `lbctl undrain web 10.20.0.11`
    Undrain {
        #[command(flatten)]
        target: BackendRef,
    },
    /// Take a backend out of service now.
    ///
    /// Example: `lbctl maintenance web 10.20.0.11`
    Maintenance {
        #[command(flatten)]
        target: BackendRef,
    },
    /// Set a backend's weight.
    ///
    /// Example: `lbctl weight web 10.20.0.11 50`
    Weight {
        #[command(flatten)]
        target: BackendRef,
        /// The new weight, 0–65535: a ratio against the VIP's other
        /// backends (0 takes it out of the table).
        weight: i64,
    },
    /// A failover drill: preview the traffic split with a cloud, region,
    /// zone or backend failed; with --apply, fail it for real and revert.
    Drill {
        /// cloud=X, region=Y, zone=Z or backend=ADDR.
        #[arg(long)]
        fail: Option<String>,
        /// Really fail it (otherwise only print what would happen).
        #[arg(long)]
        apply: bool,
        /// How long the failure lasts before the agent reverts it (e.g. 60s).
        #[arg(long = "for", default_value = "60s")]
        duration: String,
        /// Return at once instead of waiting for the revert.
        #[arg(long)]
        detach: bool,
        /// End the running drill now.
        #[arg(long, conflicts_with_all = ["fail", "apply"])]
        stop: bool,
    },
    /// Recent decision events of the agent.
    ///
    /// Example: `lbctl events --follow -o json` (one event per line)
    Events {
        /// Keep printing new events as they happen, until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// The audit log: every change accepted or rejected, who made it and
    /// from where (read from the agent's state directory).
    Audit {
        /// The audit log file.
        #[arg(long, default_value = "/var/lib/lb/audit.log")]
        file: PathBuf,
        /// Only the last N records.
        #[arg(long, short = 'n')]
        last: Option<usize>,
        /// Only rejected changes.
        #[arg(long)]
        rejected: bool,
    },
    /// Who the agent takes this client for: token id, role, tenant.
    Whoami,
    /// Every agent of the fleet as published in etcd: table digests, health
    /// views, and where they disagree.
    Fleet {
        /// etcd client URLs (comma-separated), e.g. http://10.0.0.5:2379.
        #[arg(long, value_delimiter = ',', required = true)]
        etcd: Vec<String>,
        /// Key prefix in etcd (agents publish under PREFIX/agents/).
        #[arg(long, default_value = "/lb")]
        etcd_prefix: String,
        #[command(flatten)]
        etcd_security: lb::cli::EtcdSecurityArgs,
    },
    /// This LB host's route control: which VIP addresses it announces to
    /// its routers and why; drain, undrain, restart hold.
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// On a backend: the decap programs `lbd decap` attached, the addresses
    /// and GUE port they accept, and what they did with packets.
    Decap {
        /// bpffs directory of the decap links (lbd decap --pin-path).
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        decap_pin_path: PathBuf,
    },
    /// On a backend: why the decap program passed, unwrapped or dropped
    /// each packet, as it happens (from a program attached with
    /// `lbd decap --trace`).
    ///
    /// Example: `lbctl trace --for 10s` or `lbctl trace -o json | jq -c 'select(.verdict == "drop")'`
    Trace {
        /// bpffs directory of the decap links (lbd decap --pin-path).
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        decap_pin_path: PathBuf,
        /// Stop after this long (e.g. 30s); otherwise until interrupted.
        #[arg(long = "for")]
        duration: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: lb::cli::Shell,
    },
    /// Write man pages into DIR (used by `cargo xtask package`).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// A backend of a VIP, as the verbs that change one name it.
#[derive(clap::Args)]
pub struct BackendRef {
    /// The VIP's name (`lbctl vip list`).
    pub vip: String,
    /// The backend's address, as in the VIP's backend list.
    pub backend: IpAddr,
}

#[derive(Subcommand)]
pub enum VipCmd {
    /// Every VIP.
    List,
}

#[derive(Subcommand)]
pub enum BackendCmd {
    /// Backends with health, state, weight and ring share.
    List {
        /// Only this VIP's backends.
        #[arg(long)]
        vip: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RingCmd {
    /// Slots per backend, expected vs actual share, digest.
    Show {
        /// The VIP whose table to show.
        #[arg(long)]
        vip: String,
    },
}

#[derive(Subcommand)]
pub enum ConntrackCmd {
    /// Entries, filtered.
    List {
        /// Only flows of this VIP.
        #[arg(long)]
        vip: Option<String>,
        /// Only flows pinned to this backend.
        #[arg(long)]
        backend: Option<IpAddr>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Number of entries.
    Count,
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Announced VIP addresses and why, drained, restart hold, BIRD.
    Status,
    /// Withdraw every VIP from the routers and keep forwarding: the
    /// routers move the flows to the other LB hosts. Kept across restarts.
    Drain,
    /// Announce again what should be announced.
    Undrain,
    /// Keep the routes through the agent's next exit within --for (a
    /// restart or upgrade follows); --release ends the hold.
    Hold {
        /// How long the hold lasts (1s–1h), e.g. 90s.
        #[arg(long = "for", default_value = "60s")]
        duration: String,
        /// End the hold now.
        #[arg(long, conflicts_with = "duration")]
        release: bool,
    },
}
