//! The demo's lab left running to try by hand: `cargo xtask demo --keep`
//! holds it up until Ctrl-C; `cargo xtask lab up` starts it in the
//! background and returns, and `cargo xtask lab down` stops it and removes
//! every namespace, pin, scratch directory and process it left.
//!
//! Everything the lab creates carries the tag `lbt-<pid>-` of the process
//! that built it (see [`crate::netns`]), so `lab down` finds all of it from
//! that one pid, even after a crash or a `kill -9`.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::{
    fleet::{Fleet, base_config},
    lab::LAB_BACKENDS,
    netns::require_root,
    stock::{IPERF3_PORT, Server},
};

/// `bulk`: web's address on iperf3's port, to every backend in every
/// forwarding mode. Hashed by client address: an iperf3 run opens a
/// control and a data connection, and both must reach the same server
/// (through whichever LB host ECMP picks for each).
const BULK: &str = r#"
  - name: bulk
    address: 10.100.0.1
    port: 5201
    hash: source-ip
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2}
    backends:
      - {address: 10.20.0.11, forwarding: l2-dsr, labels: {cloud: aws}}
      - {address: 10.20.0.12, forwarding: l2-dsr, labels: {cloud: aws}}
      - {address: 10.32.1.2, forwarding: ipip, labels: {cloud: gcp}}
      - {address: 10.32.2.2, forwarding: ipip, labels: {cloud: gcp}}
      - {address: 10.33.1.2, forwarding: gue, labels: {cloud: azure}}
      - {address: 10.33.2.2, forwarding: gue, labels: {cloud: azure}}
"#;

/// The demo lab's configuration: the fleet's, plus `bulk` for iperf3.
pub fn config() -> Result<String> {
    Ok(format!("{}{BULK}", base_config()?))
}

/// `iperf3 -s` on every backend, for `bulk`; killed when dropped (before
/// the lab's namespaces go: hold these after the [`Fleet`]).
pub fn iperf3_servers(f: &Fleet) -> Result<Vec<Server>> {
    f.lab
        .backends
        .iter()
        .map(|b| Server::iperf3(&b.ns, b.name, IPERF3_PORT))
        .collect()
}

/// Debian's nginx in place of the project's lab server on every backend,
/// answering HTTP on port 80 with the backend's name as the lab server
/// does (so the VIPs answer alike; the UDP `dns` VIP has no server then).
pub fn nginx_servers(f: &mut Fleet) -> Result<Vec<Server>> {
    let names: Vec<&'static str> = f.lab.backends.iter().map(|b| b.name).collect();
    let mut servers = vec![];
    for name in names {
        f.lab.kill_server(name);
        servers.push(Server::nginx(&f.lab.backend(name).ns, name, 80)?);
    }
    Ok(servers)
}

/// Every agent sees every backend of `bulk` healthy.
pub fn wait_bulk_healthy(f: &Fleet) -> Result<()> {
    for i in 0..f.hosts() {
        for b in LAB_BACKENDS {
            f.agent(i)
                .wait_healthy("bulk", b, true, Duration::from_secs(15))?;
        }
    }
    Ok(())
}

/// One way into the running lab: what it does and the command line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Way {
    pub what: String,
    pub command: String,
}

/// How to reach the running lab: a shell on the client, a `curl` to each
/// HTTP VIP, an `iperf3` run, and `lbctl` against each LB host's agent.
pub fn ways_in(f: &Fleet) -> Result<Vec<Way>> {
    let client = f.lab.client.name();
    let mut ways = vec![Way {
        what: "a shell on the client".into(),
        command: format!("ip netns exec {client} bash"),
    }];
    for (vip, name) in [
        ("10.100.0.1", "web (L2 DSR to aws, local-first)"),
        ("10.100.0.3", "orders (IPIP to gcp)"),
        ("10.100.0.4", "partners (active-passive)"),
        ("[fd00:100::1]", "web6 (IPv6-in-IPv6, GUE over IPv6)"),
    ] {
        ways.push(Way {
            what: name.into(),
            command: format!("ip netns exec {client} curl -s http://{vip}/"),
        });
    }
    ways.push(Way {
        what: "bulk (iperf3 -s on every backend)".into(),
        command: format!("ip netns exec {client} iperf3 -c 10.100.0.1 -p {IPERF3_PORT} -t 5"),
    });
    // nsenter, not `ip netns exec`: that remounts /sys, and the pins
    // under /sys/fs/bpf would vanish from lbctl's view.
    for i in 0..f.hosts() {
        let cmd = f.agent(i).lbctl_command(&["status"])?;
        let words: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        ways.push(Way {
            what: format!("lbctl on LB host {}", i + 1),
            command: words.join(" "),
        });
    }
    Ok(ways)
}

/// `ways` as the lines `--keep` and `lab up` print, ending with how to
/// tear the lab down.
pub fn describe(ways: &[Way], teardown: &str) -> String {
    let mut s = format!("\nthe lab stays up; {teardown} (namespaces, pins, processes).\n");
    for w in ways {
        s.push_str(&format!("  {:<36} {}\n", w.what, w.command));
    }
    s.push_str("  (and top, stats --watch, events --follow, explain ... in place of status)\n");
    s
}

/// Set by SIGINT/SIGTERM while the lab is held up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From here on SIGINT and SIGTERM only ask [`wait_for_stop`] to return,
/// so the caller's destructors tear the lab down.
pub fn catch_stop_signals() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, stop as *const () as libc::sighandler_t);
    }
}

pub fn wait_for_stop() {
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where `lab up` keeps its pid, log and the ways in (`target/lab`).
pub fn default_state_dir() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).join("target/lab")
}

const PID: &str = "pid";
const LOG: &str = "lab.log";
const WAYS: &str = "ways.json";

/// `lab up`: starts [`serve`] in its own session (so it outlives this
/// process and the terminal's Ctrl-C), waits until the lab serves, prints
/// the ways in and returns. `stock`: nginx on the backends.
pub fn up(state: &Path, stock: bool) -> Result<()> {
    require_root()?;
    fs::create_dir_all(state)?;
    if let Some(pid) = read_pid(state).filter(|p| is_lab(*p)) {
        bail!("a lab is already up (pid {pid}); `cargo xtask lab down` removes it");
    }
    let _ = fs::remove_file(state.join(WAYS));
    let log = fs::File::create(state.join(LOG))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("serve")
        .arg("--state-dir")
        .arg(state)
        .args(stock.then_some("--stock"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the lab")?;
    fs::write(state.join(PID), child.id().to_string())?;
    println!(
        "building the lab (pid {}, log {})",
        child.id(),
        state.join(LOG).display()
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(text) = fs::read_to_string(state.join(WAYS)) {
            let ways: Vec<Way> = serde_json::from_str(&text)?;
            print!(
                "{}",
                describe(&ways, "`cargo xtask lab down` tears it down")
            );
            return Ok(());
        }
        let failed = match child.try_wait()? {
            Some(status) => Some(format!("it exited ({status})")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                Some("it did not serve within 5 minutes".to_string())
            }
            None => None,
        };
        if let Some(why) = failed {
            let _ = fs::remove_file(state.join(PID));
            let log = fs::read_to_string(state.join(LOG)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the lab did not come up: {why}; its log ends:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The background half of `lab up`: builds the lab, starts the agents and
/// the iperf3 servers (and with `stock` nginx for HTTP), writes the ways
/// in, and holds the lab until SIGTERM.
pub fn serve(state: &Path, stock: bool) -> Result<()> {
    require_root()?;
    catch_stop_signals();
    let mut f = Fleet::build(3)?;
    let mut servers = iperf3_servers(&f)?;
    if stock {
        servers.extend(nginx_servers(&mut f)?);
    }
    f.start_all(&config()?)?;
    wait_bulk_healthy(&f)?;
    let ways = ways_in(&f)?;
    // Written whole, then renamed: `up` never reads half a file.
    let tmp = state.join(format!("{WAYS}.tmp"));
    fs::write(&tmp, serde_json::to_string_pretty(&ways)?)?;
    fs::rename(&tmp, state.join(WAYS))?;
    println!("serving; SIGTERM tears the lab down");
    wait_for_stop();
    println!("tearing the lab down");
    drop(servers);
    drop(f);
    Ok(())
}

/// `lab down`: stops the lab `up` started (SIGTERM, then SIGKILL after a
/// minute), then removes whatever carries its tag and says what it found.
/// Fails if anything is left.
pub fn down(state: &Path) -> Result<()> {
    require_root()?;
    let Some(pid) = read_pid(state) else {
        println!("no lab is up (no {})", state.join(PID).display());
        return Ok(());
    };
    if is_lab(pid) {
        println!("stopping the lab (pid {pid})");
        signal(pid, libc::SIGTERM);
        if !wait_gone(pid, Duration::from_secs(60)) {
            println!("it did not stop within a minute: killing it");
            signal(pid, libc::SIGKILL);
            wait_gone(pid, Duration::from_secs(5));
        }
    }
    let tag = format!("{}{pid}-", crate::netns::PREFIX);
    let removed = sweep(&tag);
    for r in &removed {
        println!("  removed a leftover {r}");
    }
    let left = leftovers(&tag);
    ensure!(
        left.is_empty(),
        "still there after lab down: {}",
        left.join(", ")
    );
    for f in [PID, WAYS] {
        let _ = fs::remove_file(state.join(f));
    }
    println!("the lab is down: no namespace, pin, scratch directory or process of it is left");
    Ok(())
}

fn read_pid(state: &Path) -> Option<i32> {
    fs::read_to_string(state.join(PID))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Is `pid` a running (not zombie) `lb-demo serve`? A stale pid file may
/// name a process that has nothing to do with the lab.
pub fn is_lab(pid: i32) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    running(pid)
        && args.first().is_some_and(|a| a.ends_with(b"lb-demo"))
        && args.get(1) == Some(&&b"serve"[..])
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions; a gone pid is ESRCH.
    unsafe { libc::kill(pid, sig) };
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !is_lab(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    !is_lab(pid)
}

/// Namespaces tagged `tag`.
fn namespaces(tag: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(tag))
        .map(String::from)
        .collect()
}

/// Entries of `dir` whose names start with `tag`.
fn tagged(dir: &Path, tag: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(tag))
        .map(|e| e.path())
        .collect()
}

/// Processes of the lab: those inside a tagged namespace (servers exec'd
/// by `ip netns exec` name no file of the lab) and those whose command
/// line names a tagged file (agents, BIRD, etcd).
pub fn processes(tag: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = namespaces(tag)
        .iter()
        .flat_map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    let me = std::process::id() as i32;
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmdline).contains(tag) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// What is left of the lab tagged `tag`, in words.
pub fn leftovers(tag: &str) -> Vec<String> {
    let mut left: Vec<String> = processes(tag)
        .iter()
        .map(|p| format!("process {p}"))
        .collect();
    left.extend(
        namespaces(tag)
            .into_iter()
            .map(|n| format!("namespace {n}")),
    );
    for dir in [Path::new("/sys/fs/bpf"), &std::env::temp_dir()] {
        left.extend(tagged(dir, tag).iter().map(|p| p.display().to_string()));
    }
    left
}

/// Removes what is left of the lab tagged `tag`: its processes first
/// (a process keeps its namespace alive), then namespaces, pins and
/// scratch directories. Returns what it removed.
fn sweep(tag: &str) -> Vec<String> {
    let mut removed = vec![];
    for pid in processes(tag) {
        signal(pid, libc::SIGKILL);
        removed.push(format!("process {pid}"));
    }
    // Killed processes leave their namespaces once the kernel reaps them.
    std::thread::sleep(Duration::from_millis(200));
    for ns in namespaces(tag) {
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        removed.push(format!("namespace {ns}"));
    }
    for pins in tagged(Path::new("/sys/fs/bpf"), tag) {
        if pins.is_dir() {
            let _ = lb::kernel::pins::reset_pinned(&pins);
            let _ = fs::remove_dir_all(&pins);
        } else {
            let _ = fs::remove_file(&pins);
        }
        removed.push(pins.display().to_string());
    }
    for dir in tagged(&std::env::temp_dir(), tag) {
        let _ = fs::remove_dir_all(&dir);
        removed.push(dir.display().to_string());
    }
    removed
}

/// `lb-demo`'s arguments after the verb: `[--state-dir DIR] [--stock]`.
pub struct Args {
    pub state_dir: PathBuf,
    pub stock: bool,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut a = Args {
            state_dir: default_state_dir(),
            stock: false,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--stock" => a.stock = true,
                "--state-dir" => match rest.next() {
                    Some(dir) => a.state_dir = PathBuf::from(dir),
                    None => bail!("--state-dir needs a directory"),
                },
                other => bail!("unknown argument {other:?}: expected [--state-dir DIR] [--stock]"),
            }
        }
        Ok(a)
    }
}
