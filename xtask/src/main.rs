//! Developer tasks: `cargo xtask setup|test|lint|demo|lab|bench|package`.
//!
//! Like aya's and bpfman's xtask this only orchestrates: the eBPF objects are
//! built by `lb-userspace/build.rs`, tests live in the crates.

mod cargo_env;
mod package;
mod setup;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer tasks for lb")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything a fresh Debian 12 machine lacks (idempotent).
    Setup,
    /// Run setup, then every test: host unit tests, BPF program tests and
    /// network-namespace end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Check formatting and clippy lints (what CI checks besides tests).
    Lint,
    /// Run the load balancer on its built-in lab.
    Demo {
        /// Leave the lab running at the end and print how to reach it
        /// (a shell on the client, curl to each VIP, lbctl on each LB
        /// host); Ctrl-C removes every namespace, pin and process.
        #[arg(long)]
        keep: bool,
    },
    /// The demo's lab without its scenarios, left running to try by hand.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Run the benchmarks (BENCHMARKS.md) and write target/bench/results.json.
    Bench {
        /// Fewer runs: finishes in under two minutes.
        #[arg(long)]
        quick: bool,
    },
    /// Build the Debian package (lbd, lbctl, systemd unit, example config,
    /// completions, man pages) into target/package/.
    Package {
        /// Directory for the .deb (and its staging tree).
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Build the lab (client, router, three LB hosts with lbd and BIRD,
    /// six backends with HTTP and iperf3 servers), print how to reach it
    /// and return; it runs in the background until `lab down`.
    Up {
        /// Debian's nginx on the backends in place of the project's lab
        /// server (HTTP answers the same; the UDP `dns` VIP goes unserved).
        #[arg(long)]
        stock: bool,
    },
    /// Stop the lab `lab up` started and remove every namespace, pin,
    /// scratch directory and process it left.
    Down,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => setup::run(),
        Task::Test { args } => test(&args),
        Task::Lint => lint(),
        Task::Demo { keep } => demo(keep),
        Task::Lab { action } => lab(action),
        Task::Bench { quick } => bench(quick),
        Task::Package { out_dir } => package::run(out_dir.as_deref()).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    util::sweep_stale_namespaces();
    // The end-to-end tests run the real lbd and lbctl binaries.
    util::step("cargo build -p lb-userspace --bins");
    util::cargo(&["build", "-p", "lb-userspace", "--bins"])?;
    util::step("cargo test --workspace (unit, BPF program and end-to-end tests)");
    let mut args = vec![
        "test",
        "--workspace",
        "--exclude",
        "lb-ebpf",
        "--no-fail-fast",
    ];
    args.extend(extra.iter().map(String::as_str));
    util::cargo(&args)
}

fn lint() -> anyhow::Result<()> {
    util::step("cargo fmt --check");
    util::cargo(&["fmt", "--all", "--check"])?;
    util::step("cargo clippy (host crates)");
    util::cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "lb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The XDP programs only build for the BPF target, with nightly's build-std.
    util::step("cargo clippy (lb-ebpf, BPF target)");
    util::cargo_nightly(&[
        "clippy",
        "-p",
        "lb-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--",
        "-D",
        "warnings",
    ])
}

fn demo(keep: bool) -> anyhow::Result<()> {
    setup::run()?;
    util::sweep_stale_namespaces();
    util::step("building and starting the lab demo");
    let mut args = vec!["run", "--quiet", "-p", "lb-tests", "--bin", "lb-demo"];
    if keep {
        args.extend(["--", "--keep"]);
    }
    util::cargo(&args)
}

fn lab(action: LabAction) -> anyhow::Result<()> {
    let mut args = vec!["run", "--quiet", "-p", "lb-tests", "--bin", "lb-demo", "--"];
    match action {
        LabAction::Up { stock } => {
            setup::run()?;
            util::sweep_stale_namespaces();
            util::step("building and starting the lab");
            args.push("up");
            if stock {
                args.push("--stock");
            }
        }
        LabAction::Down => args.push("down"),
    }
    util::cargo(&args)
}

fn bench(quick: bool) -> anyhow::Result<()> {
    setup::run()?;
    util::sweep_stale_namespaces();
    util::step("building and running the benchmarks");
    let mut args = vec![
        "run",
        "--release",
        "--quiet",
        "-p",
        "lb-tests",
        "--bin",
        "lb-bench",
        "--",
    ];
    if quick {
        args.push("--quick");
    }
    util::cargo(&args)
}
