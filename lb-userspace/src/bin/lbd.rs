//! `lbd`: the load balancer agent.

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use lb::{
    core::config,
    core::prefix::Prefix,
    daemon::{agent, etcd},
    kernel::{
        DataplaneError,
        decap::{Checks, Decap},
        host, pins,
    },
};

/// The lb agent: loads the XDP data path, keeps its tables in step with the
/// configuration and backend health, serves metrics and an API.
#[derive(Parser)]
#[command(name = "lbd", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Configuration file (YAML or JSON).
    #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,
    /// Discard the pinned data path (connection table included) and start
    /// fresh, instead of adopting it.
    #[arg(long)]
    reset_state: bool,
    /// Log format on stderr (under systemd, logs go to journald); overrides
    /// the file's `log.format`.
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    /// Take VIPs and backends from etcd (comma-separated client URLs, e.g.
    /// http://10.0.0.5:2379), in addition to the file; overrides the
    /// file's `etcd.endpoints`.
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Key prefix in etcd (VIPs under PREFIX/vips/, agents publish under
    /// PREFIX/agents/); overrides the file's `etcd.prefix` (default /lb).
    #[arg(long)]
    etcd_prefix: Option<String>,
    #[command(flatten)]
    etcd_security: lb::cli::EtcdSecurityArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecapMode {
    Driver,
    Generic,
}

#[derive(clap::Args)]
struct DecapArgs {
    /// Interface the tunnels arrive on.
    #[arg(long)]
    iface: String,
    /// This host's address(es) the tunnels are sent to.
    #[arg(long = "address", value_delimiter = ',', required_unless_present_any = ["any_destination", "detach"])]
    addresses: Vec<std::net::IpAddr>,
    /// Accept tunnels to any destination address.
    #[arg(long)]
    any_destination: bool,
    /// Source prefix the LB hosts send tunnels from (e.g. 10.20.0.0/24;
    /// repeat or comma-separate).
    #[arg(long = "lb-source", value_delimiter = ',', required_unless_present_any = ["any_source", "detach"])]
    lb_sources: Vec<Prefix>,
    /// Accept tunnels from anywhere (an open tunnel endpoint if this host
    /// is reachable from the Internet).
    #[arg(long)]
    any_source: bool,
    /// VIP address this backend serves: only packets for these are
    /// unwrapped (repeat or comma-separate).
    #[arg(long = "vip", value_delimiter = ',', required_unless_present_any = ["any_vip", "detach"])]
    vips: Vec<std::net::IpAddr>,
    /// Unwrap packets for any inner destination.
    #[arg(long)]
    any_vip: bool,
    /// What happens to a refused tunnel: passed untouched (the stack has
    /// no tunnel driver and discards it), or dropped in XDP. Counted
    /// either way.
    #[arg(long, value_enum, default_value_t = Refused::Pass)]
    refused: Refused,
    /// GUE port (0 disables GUE).
    #[arg(long, default_value_t = lb_common::limits::DEFAULT_GUE_PORT)]
    gue_port: u16,
    /// XDP mode.
    #[arg(long, value_enum, default_value_t = DecapMode::Driver)]
    mode: DecapMode,
    /// bpffs directory for the pinned link.
    #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
    pin_path: PathBuf,
    /// Log every IP packet's verdict and reason (read them with `lbctl
    /// trace`); off, the logging is removed by the verifier and costs
    /// nothing. Run again without it to turn it off.
    #[arg(long)]
    trace: bool,
    /// Remove the decap program from the interface instead.
    #[arg(long)]
    detach: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Refused {
    Pass,
    Drop,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn config(self) -> config::LogFormat {
        match self {
            LogFormat::Text => config::LogFormat::Text,
            LogFormat::Json => config::LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// On a backend: attach the decap program, which strips lb's tunnels
    /// (IPIP, IPv6-in-IPv6, IPv4-in-IPv6, GUE) from packets to ADDRESS, so
    /// the backend needs no tunnel drivers. Only tunnels from an LB source
    /// prefix whose inner packet is for one of the VIPs are unwrapped. The
    /// program stays attached (pinned) after this command exits.
    Decap(DecapArgs),
    /// Validate the configuration and print the plan; loads nothing.
    Check {
        /// Print the validated configuration as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the pinned data path: detach the balancer from its interfaces
    /// and drop its maps, connection table included. Refused while an agent
    /// is running. Only needed to take lb off a host for good: stopping or
    /// upgrading the agent leaves the data path forwarding on purpose.
    Unload,
    /// Withdraw every VIP this host announces through BIRD (the include
    /// file emptied, BIRD told), without an agent: what the unit runs when
    /// the agent exits in failure, so a dead agent does not keep
    /// attracting traffic.
    Withdraw,
    /// Print the API's OpenAPI document (YAML), generated from the
    /// handlers: what docs/openapi.yaml holds.
    Openapi,
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: lb::cli::Shell,
    },
    /// Write man pages into DIR (used by `cargo xtask package`), and
    /// lb.yaml(5) into --config-dir.
    #[command(hide = true)]
    Man {
        dir: PathBuf,
        #[arg(long)]
        config_dir: Option<PathBuf>,
    },
}

/// lbd(8)'s sections beyond its flags.
const LBD_MAN: lb::man::ManExtra = lb::man::ManExtra {
    exit_status: &[
        (
            "0",
            "The agent stopped on SIGTERM or SIGINT (the data path stays attached and forwarding), or the command succeeded.",
        ),
        (
            "1",
            "A failure: the data path could not be loaded or attached, a listener could not be bound, missing capabilities, or a command failed.",
        ),
        (
            "2",
            "The configuration file is invalid (every error is printed with its field path), or the command line is.",
        ),
    ],
    files: &[
        (
            "/etc/lb/lb.yaml",
            "The configuration, see lb.yaml(5); lbd check validates it.",
        ),
        (
            "/run/lb/lbd.sock",
            "The API's Unix socket (api.socket, mode 0600).",
        ),
        (
            "/sys/fs/bpf/lb",
            "The pinned data path (pin_path): program, XDP links, maps; adopted by the next lbd.",
        ),
        (
            "/var/lib/lb",
            "state_dir: state.json (health, drains, overrides, drills), etcd.json, audit.log.",
        ),
        (
            "/sys/fs/bpf/lb-decap",
            "lbd decap's pinned links, one per interface (decap --pin-path).",
        ),
    ],
    signals: &[
        (
            "SIGHUP",
            "Re-read the configuration file; a rejected file leaves the running configuration in place. The file's modification is also noticed without a signal.",
        ),
        (
            "SIGTERM, SIGINT",
            "Save the state, withdraw routes (unless a restart hold is in force) and exit; the data path keeps forwarding with its last tables.",
        ),
    ],
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    // The agent logs as its file says; the other commands at the default.
    if !matches!(command, Command::Run) {
        init_logging(config::LogCfg::default(), cli.run.log_format);
    }
    match command {
        Command::Check { json } => check(&cli.run.config, json),
        Command::Decap(args) => decap(&args),
        Command::Run => run(cli.run),
        Command::Unload => unload(&cli.run.config),
        Command::Withdraw => withdraw(&cli.run.config),
        Command::Openapi => {
            print!("{}", lb::daemon::api::openapi::yaml());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            lb::cli::completions(Cli::command(), shell);
            ExitCode::SUCCESS
        }
        Command::Man { dir, config_dir } => {
            match lb::cli::man_pages(Cli::command(), "8", &dir, &LBD_MAN)
                .and_then(|_| config_dir.map_or(Ok(()), |d| lb::man::config_page(&d).map(|_| ())))
            {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `lbd unload`: the pin directory comes from the configuration when it
/// parses, else the default.
fn withdraw(config_path: &std::path::Path) -> ExitCode {
    let c = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(a) = c.announce else {
        lb::outln!(
            "no announce: section in {}: nothing to withdraw",
            config_path.display()
        );
        return ExitCode::SUCCESS;
    };
    let Some(rt) = lb::cli::runtime(None) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(lb::daemon::announce::withdraw_now(&a)) {
        Ok(Ok(())) => {
            lb::outln!(
                "every VIP withdrawn ({} emptied, BIRD reconfigured)",
                a.include_file.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            lb::outln!(
                "{} emptied; BIRD did not take it now ({e}): it reads the file when it starts",
                a.include_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn unload(config_path: &std::path::Path) -> ExitCode {
    let (pin_path, socket) = match config::load(config_path) {
        Ok(c) => (c.pin_path, c.api.socket),
        Err(_) => (
            PathBuf::from(config::DEFAULT_PIN_PATH),
            PathBuf::from(config::DEFAULT_API_SOCKET),
        ),
    };
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        eprintln!(
            "error: an agent answers on {}: stop it first (systemctl stop lbd)",
            socket.display()
        );
        return ExitCode::FAILURE;
    }
    if !pin_path.exists() {
        lb::outln!("nothing pinned under {}", pin_path.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = pins::reset_pinned(&pin_path) {
        eprintln!("error: {:#}", anyhow::Error::from(e));
        return ExitCode::FAILURE;
    }
    // The directories are empty now; a failure here leaves nothing running.
    for d in ["links", "maps", ""] {
        let _ = std::fs::remove_dir(pin_path.join(d));
    }
    lb::outln!(
        "data path removed: detached and unpinned {}",
        pin_path.display()
    );
    ExitCode::SUCCESS
}

fn init_logging(file: config::LogCfg, flag: Option<LogFormat>) -> &'static str {
    let mut cfg = file;
    if let Some(f) = flag {
        cfg.format = f.config();
    }
    lb::daemon::logging::init(cfg)
}

fn check(path: &std::path::Path, json: bool) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            if json {
                lb::outln!(
                    "{}",
                    serde_json::to_string_pretty(&config::render::to_file(&c))
                        .expect("a JSON tree serializes")
                );
            } else {
                for line in config::render::plan(&c) {
                    lb::outln!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn decap(args: &DecapArgs) -> ExitCode {
    let DecapArgs {
        iface,
        addresses,
        gue_port,
        pin_path,
        ..
    } = args;
    let link = pin_path.join(iface);
    if args.detach {
        return match std::fs::remove_file(&link) {
            Ok(()) => {
                lb::outln!("decap detached from {iface}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: {}: {e} (was decap attached to {iface} with this --pin-path?)",
                    link.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    let missing = host::missing_capabilities();
    if !missing.is_empty() {
        eprintln!(
            "error: lbd decap loads an XDP program and needs {} (run it as root)",
            missing.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let result = (|| -> Result<(), DataplaneError> {
        let mut d = Decap::load(args.trace)?;
        d.configure(
            *gue_port,
            Checks {
                any_destination: args.any_destination,
                any_source: args.any_source,
                any_vip: args.any_vip,
                drop_refused: args.refused == Refused::Drop,
            },
        )?;
        for a in addresses {
            d.add_local_address(*a)?;
        }
        for p in &args.lb_sources {
            d.add_lb_source(*p)?;
        }
        for v in &args.vips {
            d.add_vip(*v)?;
        }
        let mode = match args.mode {
            DecapMode::Driver => aya::programs::XdpMode::Driver,
            DecapMode::Generic => aya::programs::XdpMode::Skb,
        };
        d.attach_pinned(iface, mode, &link)
    })();
    let list = |all: bool, items: Vec<String>| {
        if all {
            "any".to_string()
        } else {
            items.join(",")
        }
    };
    match result {
        Ok(()) => {
            lb::outln!(
                "decap attached to {iface} for {} from {} to VIPs {} (GUE port {gue_port}, refused tunnels {}); pinned at {}",
                list(
                    args.any_destination,
                    addresses.iter().map(ToString::to_string).collect()
                ),
                list(
                    args.any_source,
                    args.lb_sources.iter().map(ToString::to_string).collect()
                ),
                list(
                    args.any_vip,
                    args.vips.iter().map(ToString::to_string).collect()
                ),
                if args.refused == Refused::Drop {
                    "dropped"
                } else {
                    "passed"
                },
                link.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let c = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(rt) = lb::cli::runtime(Some(2)) else {
        return ExitCode::FAILURE;
    };
    let sink = init_logging(c.log, args.log_format);
    tracing::debug!(to = sink, level = c.log.level.name(), "logging");
    let etcd = etcd_options(&c, &args);
    let opts = agent::RunOptions {
        reset_state: args.reset_state,
        etcd,
    };
    match rt.block_on(agent::run(c, Some(args.config), opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// The etcd feed from the file's `etcd:` section, each flag given on the
/// command line taking the place of the file's value.
fn etcd_options(c: &config::Config, args: &RunArgs) -> Option<etcd::EtcdOptions> {
    let file = c.etcd.clone();
    let endpoints = if args.etcd.is_empty() {
        file.as_ref()?.endpoints.clone()
    } else {
        args.etcd.clone()
    };
    let file = file.unwrap_or_else(|| config::EtcdCfg::new(vec![]));
    let flags = args.etcd_security.security();
    let security = etcd::EtcdSecurity {
        ca_file: flags.ca_file.or(file.ca_file),
        cert_file: flags.cert_file.or(file.cert_file),
        key_file: flags.key_file.or(file.key_file),
        user: flags.user.or(file.user),
        password_file: flags.password_file.or(file.password_file),
    };
    Some(etcd::EtcdOptions {
        state_dir: None,
        endpoints,
        security,
        prefix: args.etcd_prefix.clone().unwrap_or(file.prefix),
    })
}
