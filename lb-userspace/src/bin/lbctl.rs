//! `lbctl`: inspect the data path (straight from the pinned maps, so it
//! works while the agent is down) and steer the agent through its API.
//!
//! Exit codes: 0 success, 1 other failure, 2 usage, 3 agent unreachable,
//! 4 no such VIP/backend, 5 request refused (invalid, conflict), 6 no
//! pinned data path or not root.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use hyper::{Method, StatusCode};
use lb::{
    client::{self, ClientError, Endpoint},
    inspect::{ExplainRequest, InspectError, Pinned, fwd_name},
};
use lb_common::{Reason, maps::*};
use serde_json::{Value, json};

/// Inspect and steer the lb load balancer.
#[derive(Parser)]
#[command(name = "lbctl", version)]
struct Cli {
    /// The agent's API socket.
    #[arg(long, global = true, default_value = lb::config::DEFAULT_API_SOCKET)]
    socket: PathBuf,
    /// Talk to the agent's TCP API at ADDR:PORT instead (needs --token-file).
    #[arg(long, global = true)]
    api: Option<String>,
    /// File holding the bearer token for --api.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// bpffs directory of the pinned data path.
    #[arg(long, global = true, default_value = lb::config::DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
    Stats {
        /// Refresh every --interval until interrupted.
        #[arg(long)]
        watch: bool,
        /// Sampling interval in seconds.
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
    Drain { vip: String, backend: IpAddr },
    /// Take a backend back into service.
    Undrain { vip: String, backend: IpAddr },
    /// Take a backend out of service now.
    Maintenance { vip: String, backend: IpAddr },
    /// Set a backend's weight.
    Weight {
        vip: String,
        backend: IpAddr,
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
    Events,
    /// On a backend: the decap programs `lbd decap` attached, the addresses
    /// and GUE port they accept, and what they did with packets.
    Decap {
        /// bpffs directory of the decap links (lbd decap --pin-path).
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        decap_pin_path: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: lb::cli_docs::Shell,
    },
    /// Write man pages into DIR (used by `cargo xtask package`).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum VipCmd {
    /// Every VIP.
    List,
}

#[derive(Subcommand)]
enum BackendCmd {
    /// Backends with health, state, weight and ring share.
    List {
        #[arg(long)]
        vip: Option<String>,
    },
}

#[derive(Subcommand)]
enum RingCmd {
    /// Slots per backend, expected vs actual share, digest.
    Show {
        #[arg(long)]
        vip: String,
    },
}

#[derive(Subcommand)]
enum ConntrackCmd {
    /// Entries, filtered.
    List {
        #[arg(long)]
        vip: Option<String>,
        #[arg(long)]
        backend: Option<IpAddr>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Number of entries.
    Count,
}

/// A failure with the exit code scripts can rely on.
struct Fail {
    code: u8,
    message: String,
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Unreachable { .. } => 3,
            ClientError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => 4,
            ClientError::Refused { .. } => 5,
            ClientError::Protocol(_) => 1,
        };
        Fail {
            code,
            message: e.to_string(),
        }
    }
}

impl From<InspectError> for Fail {
    fn from(e: InspectError) -> Self {
        let code = match e {
            InspectError::NotRoot | InspectError::NotPinned(_) => 6,
            _ => 1,
        };
        Fail {
            code,
            message: e.to_string(),
        }
    }
}

fn fail(code: u8, message: impl Into<String>) -> Fail {
    Fail {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn endpoint(cli: &Cli) -> Result<Endpoint, Fail> {
    match &cli.api {
        None => Ok(Endpoint::Unix(cli.socket.clone())),
        Some(addr) => {
            let file = cli
                .token_file
                .as_ref()
                .ok_or_else(|| fail(2, "--api needs --token-file"))?;
            let token = std::fs::read_to_string(file)
                .map_err(|e| fail(1, format!("{}: {e}", file.display())))?;
            Ok(Endpoint::Tcp {
                addr: addr.clone(),
                token: token.trim().to_string(),
            })
        }
    }
}

/// The agent's state if it answers (names, health, policy).
async fn agent_state(cli: &Cli) -> Option<Value> {
    let ep = endpoint(cli).ok()?;
    client::request(&ep, Method::GET, "/v1/state", None)
        .await
        .ok()
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time.
fn clock(t: f64) -> String {
    let ms = (t * 1000.0) as u64;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(header.iter().map(|s| s.to_string()).collect()).trim_end()
    );
    for r in rows {
        println!("{}", line(r.clone()).trim_end());
    }
}

fn vip_name(state: &Option<Value>, id: u32, fallback: String) -> String {
    state
        .as_ref()
        .and_then(|s| {
            s["vips"]
                .as_array()?
                .iter()
                .find(|v| v["id"] == id)
                .map(|v| v["name"].as_str().unwrap_or("").to_string())
        })
        .unwrap_or(fallback)
}

/// VIP id by name (from the agent) or by `address:port/proto`.
fn resolve_vip(state: &Option<Value>, pinned: &Pinned, name: &str) -> Result<u32, Fail> {
    if let Some(id) = state.as_ref().and_then(|s| {
        s["vips"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["id"].as_u64())
    }) {
        return Ok(id as u32);
    }
    for v in pinned.vips()? {
        if format!("{}:{}/{}", v.address, v.port, v.protocol) == name
            || format!("{}:{}", v.address, v.port) == name
        {
            return Ok(v.id);
        }
    }
    Err(fail(
        4,
        format!("no VIP {name:?} (use the name shown by `lbctl vip list`)"),
    ))
}

async fn run(cli: &Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Completions { shell } => {
            lb::cli_docs::completions(Cli::command(), *shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => lb::cli_docs::man_pages(Cli::command(), "1", dir)
            .map(|_| ())
            .map_err(|e| fail(1, format!("{}: {e}", dir.display()))),
        Command::Vip { cmd: VipCmd::List } => vip_list(cli).await,
        Command::Backend {
            cmd: BackendCmd::List { vip },
        } => backend_list(cli, vip.as_deref()).await,
        Command::Ring {
            cmd: RingCmd::Show { vip },
        } => ring_show(cli, vip).await,
        Command::Conntrack { cmd } => conntrack(cli, cmd).await,
        Command::Stats { watch, interval } => stats(cli, *watch, *interval).await,
        Command::Explain {
            src,
            dst,
            proto,
            syn,
            iface,
        } => explain(cli, *src, *dst, proto, *syn, iface.as_deref()).await,
        Command::Drain { vip, backend } => admin(cli, vip, *backend, "drain").await,
        Command::Undrain { vip, backend } => admin(cli, vip, *backend, "undrain").await,
        Command::Maintenance { vip, backend } => admin(cli, vip, *backend, "maintenance").await,
        Command::Weight {
            vip,
            backend,
            weight,
        } => {
            let ep = endpoint(cli)?;
            let v = client::request(
                &ep,
                Method::PUT,
                &format!("/v1/vips/{vip}/backends/{backend}/weight"),
                Some(json!({"weight": weight}).to_string()),
            )
            .await?;
            show_vip(cli, &v);
            Ok(())
        }
        Command::Drill {
            fail: sel,
            apply,
            duration,
            detach,
            stop,
        } => drill(cli, sel.as_deref(), *apply, duration, *detach, *stop).await,
        Command::Events => {
            let v = client::request(&endpoint(cli)?, Method::GET, "/v1/events", None).await?;
            if cli.output == Output::Json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                vec![
                                    clock(e["time"].as_f64().unwrap_or(0.0)),
                                    e["kind"].as_str().unwrap_or("").into(),
                                    e["vip"].as_str().unwrap_or("-").into(),
                                    e["backend"].as_str().unwrap_or("-").into(),
                                    e["reason"].as_str().unwrap_or("").into(),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["TIME (UTC)", "EVENT", "VIP", "BACKEND", "REASON"], &rows);
            }
            Ok(())
        }
        Command::Decap { decap_pin_path } => decap(cli, decap_pin_path),
    }
}

fn decap(cli: &Cli, pin_path: &std::path::Path) -> Result<(), Fail> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(6, "reading the decap program's maps needs root"));
    }
    let attached = lb::decap::attached(pin_path)
        .map_err(|e| fail(1, format!("{:#}", anyhow::Error::from(e))))?;
    if attached.is_empty() {
        return Err(fail(
            6,
            format!(
                "no decap program pinned under {}: run `lbd decap --iface IFACE --address ADDR` (or systemctl start lb-decap@IFACE); tunnelled packets are dropped until then",
                pin_path.display()
            ),
        ));
    }
    if cli.output == Output::Json {
        print_json(&json!(attached));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = attached
        .iter()
        .map(|d| {
            let addrs = if d.any_destination {
                "any".to_string()
            } else {
                d.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut row = vec![
                d.iface.clone(),
                d.program_id.to_string(),
                addrs,
                if d.gue_port == 0 {
                    "off".into()
                } else {
                    d.gue_port.to_string()
                },
            ];
            row.extend([d.decap_ok, d.decap_pass, d.decap_drop_malformed].map(|n| n.to_string()));
            row
        })
        .collect();
    table(
        &[
            "IFACE",
            "PROG",
            "ACCEPTS",
            "GUE PORT",
            "DECAP_OK",
            "DECAP_PASS",
            "DECAP_DROP_MALFORMED",
        ],
        &rows,
    );
    Ok(())
}

async fn vip_list(cli: &Cli) -> Result<(), Fail> {
    let pinned = Pinned::open(&cli.pin_path)?;
    let state = agent_state(cli).await;
    let vips = pinned.vips()?;
    let mut out = vec![];
    for v in &vips {
        let ring = pinned.live_ring(v.id)?;
        let t = pinned.vip_traffic(v.id)?;
        let name = vip_name(
            &state,
            v.id,
            format!("{}:{}/{}", v.address, v.port, v.protocol),
        );
        let hash_mode = ["five-tuple", "source-ip", "source-ip-dest-port"]
            .get(v.hash_mode as usize)
            .copied()
            .unwrap_or("?");
        out.push(json!({
            "name": name, "id": v.id, "address": v.address, "port": v.port, "protocol": v.protocol,
            "hash_mode": hash_mode,
            "move_flows_on_down": v.flags & VIP_F_MOVE_FLOWS_ON_DOWN != 0,
            "digest": lb::maglev::digest(&ring),
            "packets": t.packets, "bytes": t.bytes, "new_flows": t.new_flows,
        }));
    }
    if cli.output == Output::Json {
        print_json(&json!(out));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|v| {
            vec![
                v["name"].as_str().unwrap_or("").into(),
                v["id"].to_string(),
                format!(
                    "{}:{}",
                    v["address"].as_str().unwrap_or(""),
                    if v["port"] == 0 {
                        "*".into()
                    } else {
                        v["port"].to_string()
                    }
                ),
                v["protocol"].as_str().unwrap_or("").into(),
                v["hash_mode"].as_str().unwrap_or("").into(),
                v["digest"].as_str().unwrap_or("").into(),
                v["packets"].to_string(),
                v["new_flows"].to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ID",
            "ADDRESS",
            "PROTO",
            "HASH",
            "DIGEST",
            "PACKETS",
            "NEW FLOWS",
        ],
        &rows,
    );
    if state.is_none() {
        eprintln!("(agent not reachable: names, health and weights are not shown)");
    }
    Ok(())
}

async fn backend_list(cli: &Cli, vip: Option<&str>) -> Result<(), Fail> {
    let pinned = Pinned::open(&cli.pin_path)?;
    let state = agent_state(cli).await;
    let only = match vip {
        Some(v) => Some(resolve_vip(&state, &pinned, v)?),
        None => None,
    };
    let m = pinned.ring_size() as f64;
    let mut out = vec![];
    for b in pinned.backends()? {
        if only.is_some_and(|o| o != b.vip_id) {
            continue;
        }
        let agent = state.as_ref().and_then(|s| {
            s["vips"].as_array()?.iter().find(|v| v["id"] == b.vip_id)?["backends"]
                .as_array()?
                .iter()
                .find(|x| x["id"] == b.id)
                .cloned()
        });
        let t = pinned.backend_traffic(b.id)?;
        out.push(json!({
            "vip": vip_name(&state, b.vip_id, b.vip_id.to_string()),
            "id": b.id, "address": b.address, "forwarding": b.forwarding,
            "healthy": agent.as_ref().map(|a| a["healthy"].clone()).unwrap_or(json!(!b.down)),
            "health_reason": agent.as_ref().map(|a| a["health_reason"].clone()).unwrap_or(Value::Null),
            "state": agent.as_ref().map(|a| a["state"].clone()).unwrap_or(Value::Null),
            "weight": agent.as_ref().map(|a| a["weight"].clone()).unwrap_or(Value::Null),
            "cloud": agent.as_ref().map(|a| a["labels"]["cloud"].clone()).unwrap_or(Value::Null),
            "ring_share": b.ring_slots as f64 / m,
            "down": b.down,
            "packets": t.packets, "new_flows": t.new_flows,
        }));
    }
    if cli.output == Output::Json {
        print_json(&json!(out));
        return Ok(());
    }
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|b| {
            vec![
                s(&b["vip"]),
                s(&b["address"]),
                s(&b["cloud"]),
                s(&b["forwarding"]),
                if b["healthy"] == true {
                    "up".into()
                } else {
                    "DOWN".into()
                },
                s(&b["state"]),
                s(&b["weight"]),
                format!("{:.2}%", b["ring_share"].as_f64().unwrap_or(0.0) * 100.0),
                s(&b["packets"]),
            ]
        })
        .collect();
    table(
        &[
            "VIP", "BACKEND", "CLOUD", "MODE", "HEALTH", "STATE", "WEIGHT", "SHARE", "PACKETS",
        ],
        &rows,
    );
    if state.is_none() {
        eprintln!(
            "(agent not reachable: health shown from the data path's down flags; state and weight unknown)"
        );
    }
    Ok(())
}

async fn ring_show(cli: &Cli, vip: &str) -> Result<(), Fail> {
    let pinned = Pinned::open(&cli.pin_path)?;
    let state = agent_state(cli).await;
    let id = resolve_vip(&state, &pinned, vip)?;
    let ring = pinned.live_ring(id)?;
    let counts = lb::maglev::counts(&ring);
    let m = ring.len() as f64;
    let agent_vip = state.as_ref().and_then(|s| {
        s["vips"]
            .as_array()?
            .iter()
            .find(|v| v["id"] == id)
            .cloned()
    });
    let mut rows = vec![];
    let mut out = vec![];
    for b in pinned.backends()?.into_iter().filter(|b| b.vip_id == id) {
        let expected = agent_vip.as_ref().and_then(|v| {
            v["backends"]
                .as_array()?
                .iter()
                .find(|x| x["id"] == b.id)
                .and_then(|x| x["expected_share"].as_f64())
        });
        let slots = counts.get(&b.id).copied().unwrap_or(0);
        out.push(json!({"backend": b.address, "id": b.id, "slots": slots, "share": slots as f64 / m, "expected_share": expected}));
        rows.push(vec![
            b.address.to_string(),
            slots.to_string(),
            format!("{:.3}%", slots as f64 / m * 100.0),
            expected
                .map(|e| format!("{:.3}%", e * 100.0))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let empty = counts
        .get(&lb_common::limits::NO_BACKEND)
        .copied()
        .unwrap_or(0);
    let digest = lb::maglev::digest(&ring);
    if cli.output == Output::Json {
        print_json(
            &json!({"vip": vip, "id": id, "ring_size": ring.len(), "digest": digest, "empty_slots": empty, "backends": out}),
        );
        return Ok(());
    }
    println!(
        "VIP {vip} (id {id}): ring size {}, digest {digest}{}",
        ring.len(),
        if empty > 0 {
            format!(", {empty} empty slots")
        } else {
            String::new()
        }
    );
    table(&["BACKEND", "SLOTS", "SHARE", "EXPECTED"], &rows);
    Ok(())
}

fn flow_text(k: &FlowKey) -> String {
    let s = lb::balancer::words_addr(k.src, k.family)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let d = lb::balancer::words_addr(k.dst, k.family)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let fmt = |a: &str, p: u16| {
        if a.contains(':') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    format!(
        "{} -> {} {}",
        fmt(&s, u16::from_be(k.sport)),
        fmt(&d, u16::from_be(k.dport)),
        lb::inspect::proto_name(k.proto)
    )
}

async fn conntrack(cli: &Cli, cmd: &ConntrackCmd) -> Result<(), Fail> {
    let pinned = Pinned::open(&cli.pin_path)?;
    match cmd {
        ConntrackCmd::Count => {
            let n = pinned.conntrack_count();
            if cli.output == Output::Json {
                print_json(&json!({"entries": n}));
            } else {
                println!("{n}");
            }
        }
        ConntrackCmd::List {
            vip,
            backend,
            limit,
        } => {
            let state = agent_state(cli).await;
            let vip_id = match vip {
                Some(v) => Some(resolve_vip(&state, &pinned, v)?),
                None => None,
            };
            let backends = pinned.backends()?;
            let backend_id = backend.map(|a| {
                backends
                    .iter()
                    .filter(|b| b.address == a && vip_id.is_none_or(|v| v == b.vip_id))
                    .map(|b| b.id)
                    .collect::<Vec<_>>()
            });
            let entries = pinned.conntrack(*limit, |_, e| {
                vip_id.is_none_or(|v| e.vip_id == v)
                    && backend_id
                        .as_ref()
                        .is_none_or(|ids| ids.contains(&e.backend_id))
            })?;
            let addr_of = |id: u32| {
                backends
                    .iter()
                    .find(|b| b.id == id)
                    .map(|b| b.address.to_string())
                    .unwrap_or_else(|| format!("#{id} (released)"))
            };
            if cli.output == Output::Json {
                let v: Vec<Value> = entries
                    .iter()
                    .map(|(k, e)| json!({"flow": flow_text(k), "vip_id": e.vip_id, "backend": addr_of(e.backend_id), "backend_id": e.backend_id}))
                    .collect();
                print_json(&json!(v));
            } else {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|(k, e)| {
                        vec![
                            flow_text(k),
                            vip_name(&state, e.vip_id, e.vip_id.to_string()),
                            addr_of(e.backend_id),
                        ]
                    })
                    .collect();
                table(&["FLOW", "VIP", "BACKEND"], &rows);
            }
        }
    }
    Ok(())
}

/// One reading of the counters: per VIP, per backend, per reason.
type Sample = (
    Vec<(u32, TrafficStats)>,
    Vec<(u32, u32, IpAddr, TrafficStats)>,
    Vec<(Reason, u64)>,
);

async fn stats(cli: &Cli, watch: bool, interval: f64) -> Result<(), Fail> {
    let pinned = Pinned::open(&cli.pin_path)?;
    let state = agent_state(cli).await;
    let interval = Duration::from_secs_f64(interval.max(0.1));
    let sample = |p: &Pinned| -> Result<Sample, Fail> {
        let vips = p
            .vips()?
            .iter()
            .map(|v| Ok((v.id, p.vip_traffic(v.id)?)))
            .collect::<Result<Vec<_>, InspectError>>()?;
        let backends = p
            .backends()?
            .iter()
            .map(|b| Ok((b.id, b.vip_id, b.address, p.backend_traffic(b.id)?)))
            .collect::<Result<Vec<_>, InspectError>>()?;
        Ok((vips, backends, p.reasons()?))
    };
    loop {
        let (v0, b0, r0) = sample(&pinned)?;
        let t0 = Instant::now();
        tokio::time::sleep(interval).await;
        let (v1, b1, r1) = sample(&pinned)?;
        let dt = t0.elapsed().as_secs_f64();
        let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / dt;
        let vip_rows: Vec<Value> = v1
            .iter()
            .map(|(id, t)| {
                let before = v0.iter().find(|(i, _)| i == id).map(|(_, t)| *t).unwrap_or_default();
                json!({"vip": vip_name(&state, *id, id.to_string()), "pps": rate(before.packets, t.packets), "bps": 8.0 * rate(before.bytes, t.bytes),
                       "new_flows_per_sec": rate(before.new_flows, t.new_flows), "packets": t.packets, "bytes": t.bytes})
            })
            .collect();
        let backend_rows: Vec<Value> = b1
            .iter()
            .map(|(id, vip, addr, t)| {
                let before = b0.iter().find(|(i, ..)| i == id).map(|(.., t)| *t).unwrap_or_default();
                json!({"vip": vip_name(&state, *vip, vip.to_string()), "backend": addr, "pps": rate(before.packets, t.packets),
                       "bps": 8.0 * rate(before.bytes, t.bytes), "packets": t.packets})
            })
            .collect();
        let reasons: Vec<Value> = r1
            .iter()
            .zip(&r0)
            .filter(|((_, total), _)| *total > 0)
            .map(|((r, total), (_, before))| json!({"reason": r.name(), "total": total, "per_sec": rate(*before, *total), "meaning": r.describe().trim()}))
            .collect();
        if cli.output == Output::Json {
            print_json(&json!({"vips": vip_rows, "backends": backend_rows, "reasons": reasons}));
        } else {
            if watch {
                print!("\x1b[2J\x1b[H");
            }
            let f = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or(0.0));
            table(
                &["VIP", "PPS", "BPS", "NEW/S", "PACKETS"],
                &vip_rows
                    .iter()
                    .map(|r| {
                        vec![
                            r["vip"].as_str().unwrap_or("").into(),
                            f(&r["pps"]),
                            f(&r["bps"]),
                            f(&r["new_flows_per_sec"]),
                            r["packets"].to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!();
            table(
                &["VIP", "BACKEND", "PPS", "BPS", "PACKETS"],
                &backend_rows
                    .iter()
                    .map(|r| {
                        vec![
                            r["vip"].as_str().unwrap_or("").into(),
                            r["backend"].as_str().unwrap_or("").into(),
                            f(&r["pps"]),
                            f(&r["bps"]),
                            r["packets"].to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
            println!();
            table(
                &["REASON", "TOTAL", "PER SEC", "MEANING"],
                &reasons
                    .iter()
                    .map(|r| {
                        vec![
                            r["reason"].as_str().unwrap_or("").into(),
                            r["total"].to_string(),
                            f(&r["per_sec"]),
                            r["meaning"].as_str().unwrap_or("").into(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
        if !watch {
            return Ok(());
        }
    }
}

async fn explain(
    cli: &Cli,
    src: SocketAddr,
    dst: SocketAddr,
    proto: &str,
    syn: bool,
    iface: Option<&str>,
) -> Result<(), Fail> {
    let proto = match proto {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        other => {
            return Err(fail(
                2,
                format!("protocol must be tcp or udp, got {other:?}"),
            ));
        }
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(fail(
            2,
            "source and destination must be of the same address family",
        ));
    }
    let pinned = Pinned::open(&cli.pin_path)?;
    let iface = match iface {
        Some(i) => i.to_string(),
        None => std::fs::read_dir(cli.pin_path.join("links"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .ok_or_else(|| {
                fail(
                    6,
                    "no attached interface found under the pin path; pass --iface",
                )
            })?,
    };
    let ifindex = lb::agent::ifindex(&iface).ok_or_else(|| {
        fail(
            1,
            format!("interface {iface} not found in this network namespace"),
        )
    })?;
    let req = ExplainRequest {
        src,
        dst,
        proto,
        syn,
        ingress_ifindex: ifindex,
    };
    let answer = pinned.explain(&req)?;
    let state = agent_state(cli).await;
    let flow = flow_text(&req.flow_key());
    let action = [
        "XDP_ABORTED",
        "XDP_DROP",
        "XDP_PASS",
        "XDP_TX",
        "XDP_REDIRECT",
    ]
    .get(answer.action as usize)
    .copied()
    .unwrap_or("?");
    let backend = answer.backend().map(|id| (id, pinned.backend(id)));
    let backend_addr = backend.as_ref().and_then(|(_, b)| {
        b.as_ref()
            .ok()
            .and_then(|b| lb::balancer::words_addr(b.addr, b.family))
    });
    let out_dst = if answer.output.len() >= 6 {
        answer.output[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    } else {
        String::new()
    };
    let v = json!({
        "flow": flow,
        "interface": iface,
        "action": action,
        "vip": if answer.record.path != 0 { Some(vip_name(&state, answer.record.vip_id, answer.record.vip_id.to_string())) } else { None },
        "decided_by": answer.path(),
        "backend": backend_addr,
        "backend_id": answer.backend(),
        "forwarding": backend.as_ref().and_then(|(_, b)| b.as_ref().ok().map(|b| fwd_name(b.fwd_mode))),
        "hash": format!("{:#010x}", answer.record.hash),
        "ring_slot": (answer.record.path == EXPLAIN_PATH_RING).then_some(answer.record.slot),
        "ring_half": (answer.record.path == EXPLAIN_PATH_RING).then_some(answer.record.half),
        "next_hop_mac": out_dst,
    });
    if cli.output == Output::Json {
        print_json(&v);
        return Ok(());
    }
    println!("flow      {flow} (arriving on {iface})");
    match answer.backend() {
        None => println!(
            "decision  {action}: not steered to a backend (not a VIP, or dropped before a choice; see `lbctl stats` reasons)"
        ),
        Some(_) => {
            println!("vip       {}", v["vip"].as_str().unwrap_or("?"));
            match answer.record.path {
                EXPLAIN_PATH_TABLE => println!(
                    "decided   by the connection table (an established flow keeps its backend)"
                ),
                _ => println!(
                    "decided   by the Maglev ring: hash {} -> slot {} of {} (half {})",
                    v["hash"].as_str().unwrap_or(""),
                    answer.record.slot,
                    pinned.ring_size(),
                    answer.record.half
                ),
            }
            println!(
                "backend   {} (id {}, {})",
                backend_addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "?".into()),
                answer.record.backend_id,
                v["forwarding"].as_str().unwrap_or("?")
            );
            println!("sent      {action}, next hop {out_dst}");
        }
    }
    Ok(())
}

fn show_vip(cli: &Cli, v: &Value) {
    if cli.output == Output::Json {
        print_json(v);
        return;
    }
    let rows: Vec<Vec<String>> = v["backends"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    vec![
                        b["address"].as_str().unwrap_or("").into(),
                        b["state"].as_str().unwrap_or("").into(),
                        b["weight"].to_string(),
                        if b["healthy"] == true {
                            "up".into()
                        } else {
                            "DOWN".into()
                        },
                        format!("{:.2}%", b["ring_share"].as_f64().unwrap_or(0.0) * 100.0),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "VIP {} digest {}",
        v["name"].as_str().unwrap_or(""),
        v["digest"].as_str().unwrap_or("")
    );
    table(&["BACKEND", "STATE", "WEIGHT", "HEALTH", "SHARE"], &rows);
}

async fn admin(cli: &Cli, vip: &str, backend: IpAddr, verb: &str) -> Result<(), Fail> {
    let v = client::request(
        &endpoint(cli)?,
        Method::POST,
        &format!("/v1/vips/{vip}/backends/{backend}/{verb}"),
        None,
    )
    .await?;
    show_vip(cli, &v);
    Ok(())
}

fn print_preview(preview: &Value) {
    for v in preview.as_array().into_iter().flatten() {
        println!(
            "VIP {}{}",
            v["vip"].as_str().unwrap_or(""),
            if v["panic"] == true {
                " (PANIC: spread over all backends)"
            } else {
                ""
            }
        );
        let rows: Vec<Vec<String>> = v["backends"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| {
                        vec![
                            b["address"].as_str().unwrap_or("").into(),
                            b["cloud"].as_str().unwrap_or("").into(),
                            b["region"].as_str().unwrap_or("").into(),
                            format!("{:.1}%", b["now"].as_f64().unwrap_or(0.0) * 100.0),
                            format!("{:.1}%", b["during"].as_f64().unwrap_or(0.0) * 100.0),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(
            &["  BACKEND", "CLOUD", "REGION", "NOW", "DURING"],
            &rows
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r[0] = format!("  {}", r[0]);
                    r
                })
                .collect::<Vec<_>>(),
        );
        for e in v["events"].as_array().into_iter().flatten() {
            println!("  would log: {}", e.as_str().unwrap_or(""));
        }
    }
}

async fn drill(
    cli: &Cli,
    sel: Option<&str>,
    apply: bool,
    duration: &str,
    detach: bool,
    stop: bool,
) -> Result<(), Fail> {
    let ep = endpoint(cli)?;
    if stop {
        let v = client::request(&ep, Method::DELETE, "/v1/drill", None).await?;
        if cli.output == Output::Json {
            print_json(&v);
        } else if v["stopped"].is_null() {
            println!("no drill was running");
        } else {
            println!(
                "drill {} ({}) stopped: reverted",
                v["stopped"]["id"],
                v["stopped"]["fail"].as_str().unwrap_or("")
            );
        }
        return Ok(());
    }
    let sel =
        sel.ok_or_else(|| fail(2, "--fail cloud=X|region=Y|zone=Z|backend=ADDR is required"))?;
    let secs = lb::config::parse_duration(duration)
        .ok_or_else(|| {
            fail(
                2,
                format!("--for: expected a duration like 60s, got {duration:?}"),
            )
        })?
        .as_secs_f64();
    let body = json!({"fail": sel, "duration_secs": secs, "dry_run": !apply}).to_string();
    let v = client::request(&ep, Method::POST, "/v1/drill", Some(body)).await?;
    if cli.output == Output::Json {
        print_json(&v);
    } else {
        if apply {
            println!(
                "drill {}: failing {sel} for {secs}s; the agent reverts it by itself",
                v["drill"]["id"]
            );
        } else {
            println!("preview: failing {sel} (nothing changes; add --apply to run it)");
        }
        print_preview(&v["preview"]);
    }
    if apply && !detach {
        let until = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let d = client::request(&ep, Method::GET, "/v1/drill", None).await?;
            if d["drill"].is_null() {
                break;
            }
        }
        if cli.output == Output::Table {
            println!("drill over: reverted");
        }
    }
    Ok(())
}
