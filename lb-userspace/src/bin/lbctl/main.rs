//! `lbctl`: inspect the data path (straight from the pinned maps, so it
//! works while the agent is down) and steer the agent through its API.
//! One module per verb; [`args`] holds the command line, [`table`] the
//! rendering, [`join`] the names the agent adds to what the maps hold.
//!
//! Exit codes: 0 success, 1 other failure, 2 usage, 3 agent unreachable,
//! 4 no such VIP/backend, 5 request refused (invalid, conflict), 6 no
//! pinned data path or not root.

mod admin;
mod args;
mod audit;
mod backend;
mod conntrack;
mod decap;
mod drill;
mod events;
mod explain;
mod fleet;
mod join;
mod node;
mod ring;
mod stats;
mod status;
mod table;
mod top;
mod trace;
mod vip;

use std::process::ExitCode;

use args::{BackendCmd, Cli, Command, Output, RingCmd, VipCmd};
use clap::{CommandFactory as _, Parser as _};
use hyper::StatusCode;
use lb::{
    client::{AdminVerb, Agent, ClientError, Endpoint},
    daemon::api::wire::AgentState,
    kernel::inspect::{InspectError, Pinned},
};

/// lbctl(1)'s sections beyond its flags.
const LBCTL_MAN: lb::man::ManExtra = lb::man::ManExtra {
    exit_status: &[
        ("0", "Success."),
        ("1", "Another failure."),
        ("2", "Usage: a bad flag or argument."),
        ("3", "The agent is unreachable (its socket or --api)."),
        ("4", "No such VIP or backend."),
        (
            "5",
            "The agent refused the request (invalid, or a conflict such as a running drill).",
        ),
        (
            "6",
            "No pinned data path (or decap program) to read, or not root.",
        ),
    ],
    files: &[
        ("/run/lb/lbd.sock", "The agent's API socket (--socket)."),
        (
            "/sys/fs/bpf/lb",
            "The pinned data path lbctl reads directly (--pin-path).",
        ),
        (
            "/sys/fs/bpf/lb-decap",
            "On a backend: the decap links (--decap-pin-path).",
        ),
        (
            "/var/lib/lb/audit.log",
            "The audit log lbctl audit reads (--file).",
        ),
    ],
    signals: &[(
        "SIGINT",
        "Ends the commands that run until interrupted (stats --watch, events --follow, top, trace).",
    )],
};

/// A failure with the exit code scripts can rely on.
pub struct Fail {
    code: u8,
    message: String,
}

pub fn fail(code: u8, message: impl Into<String>) -> Fail {
    Fail {
        code,
        message: message.into(),
    }
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Unreachable { .. } => 3,
            ClientError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => 4,
            ClientError::Refused { .. } => 5,
            ClientError::Protocol(_) => 1,
        };
        fail(code, e.to_string())
    }
}

impl From<InspectError> for Fail {
    fn from(e: InspectError) -> Self {
        let code = match e {
            InspectError::NotRoot | InspectError::NotPinned(_) => 6,
            _ => 1,
        };
        fail(code, e.to_string())
    }
}

/// What every verb runs with.
pub struct Ctx<'a> {
    pub cli: &'a Cli,
}

impl Ctx<'_> {
    pub fn output(&self) -> Output {
        self.cli.output
    }

    pub fn agent(&self) -> Result<Agent, Fail> {
        let endpoint = match &self.cli.api {
            None => Endpoint::Unix(self.cli.socket.clone()),
            Some(addr) => {
                let file = self
                    .cli
                    .token_file
                    .as_ref()
                    .ok_or_else(|| fail(2, "--api needs --token-file"))?;
                let token = std::fs::read_to_string(file)
                    .map_err(|e| fail(1, format!("{}: {e}", file.display())))?;
                let (addr, tls) = match addr.strip_prefix("https://") {
                    Some(a) => {
                        let ca = self
                            .cli
                            .ca_file
                            .as_ref()
                            .ok_or_else(|| fail(2, "--api https://... needs --ca-file"))?;
                        let client = self
                            .cli
                            .client_cert
                            .as_deref()
                            .zip(self.cli.client_key.as_deref());
                        let cfg = lb::http::client_tls(ca, client).map_err(|e| fail(1, e))?;
                        (a.to_string(), Some(std::sync::Arc::new(cfg)))
                    }
                    None => (addr.trim_start_matches("http://").to_string(), None),
                };
                Endpoint::Tcp {
                    addr,
                    token: token.trim().to_string(),
                    tls,
                }
            }
        };
        Ok(Agent::new(endpoint))
    }

    /// The agent's state if it answers (names, health, policy).
    pub async fn state(&self) -> Option<AgentState> {
        self.agent().ok()?.state().await.ok()
    }

    pub fn pinned(&self) -> Result<Pinned, Fail> {
        Ok(Pinned::open(&self.cli.pin_path)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(rt) = lb::cli::runtime(None) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(run(&Ctx { cli: &cli })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(ctx: &Ctx<'_>) -> Result<(), Fail> {
    match &ctx.cli.command {
        Command::Completions { shell } => {
            lb::cli::completions(Cli::command(), *shell);
            Ok(())
        }
        Command::Man { dir } => lb::cli::man_pages(Cli::command(), "1", dir, &LBCTL_MAN)
            .map(|_| ())
            .map_err(|e| fail(1, format!("{}: {e}", dir.display()))),
        Command::Vip { cmd: VipCmd::List } => vip::list(ctx).await,
        Command::Backend {
            cmd: BackendCmd::List { vip },
        } => backend::list(ctx, vip.as_deref()).await,
        Command::Ring {
            cmd: RingCmd::Show { vip },
        } => ring::show(ctx, vip).await,
        Command::Conntrack { cmd } => conntrack::run(ctx, cmd).await,
        Command::Stats { watch, interval } => stats::run(ctx, *watch, *interval).await,
        Command::Explain {
            src,
            dst,
            proto,
            syn,
            iface,
        } => explain::run(ctx, *src, *dst, proto, *syn, iface.as_deref()).await,
        Command::Drain { target } => admin::set(ctx, target, AdminVerb::Drain).await,
        Command::Undrain { target } => admin::set(ctx, target, AdminVerb::Undrain).await,
        Command::Maintenance { target } => admin::set(ctx, target, AdminVerb::Maintenance).await,
        Command::Weight { target, weight } => admin::weight(ctx, target, *weight).await,
        Command::Drill {
            fail: sel,
            apply,
            duration,
            detach,
            stop,
        } => drill::run(ctx, sel.as_deref(), *apply, duration, *detach, *stop).await,
        Command::Events { follow } => events::list(ctx, *follow).await,
        Command::Status => status::show(ctx).await,
        Command::Top { interval } => top::run(ctx, *interval).await,
        Command::Version => status::version(ctx).await,
        Command::Audit {
            file,
            last,
            rejected,
        } => audit::show(ctx, file, *last, *rejected),
        Command::Whoami => audit::whoami(ctx).await,
        Command::Fleet {
            etcd,
            etcd_prefix,
            etcd_security,
        } => fleet::show(ctx, etcd, etcd_prefix, &etcd_security.security()).await,
        Command::Node { cmd } => node::run(ctx, cmd).await,
        Command::Decap { decap_pin_path } => decap::show(ctx, decap_pin_path),
        Command::Trace {
            decap_pin_path,
            duration,
        } => trace::run(ctx, decap_pin_path, duration.as_deref()).await,
    }
}
