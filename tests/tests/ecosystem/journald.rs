//! Logs in the journal: the agent run as systemd runs it, stderr on a
//! journal stream with `JOURNAL_STREAM` naming it, under a real
//! `systemd-journald` started in a private mount namespace (its sockets
//! and the volatile journal on tmpfs, so the host's journal, if any, is
//! untouched), read back with `journalctl`.

use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    netns::Netns,
    procs::{TempDir, bin},
};

use super::Env;

/// Starts journald, runs lbd on a journal stream until its API answers,
/// stops it, and saves what `journalctl` shows.
const SCRIPT: &str = r#"set -eu
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd; mount -t tmpfs tmpfs /run/systemd; }
mkdir -p /run/systemd/journal /run/log/journal
mount -t tmpfs tmpfs /run/log/journal
/lib/systemd/systemd-journald & JOURNALD=$!
trap 'kill $JOURNALD 2>/dev/null || true' EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
# As systemd does for StandardError=journal: stderr is a journal stream and
# JOURNAL_STREAM names it (device:inode).
systemd-cat -t lbd sh -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec nsenter --net=/var/run/netns/NETNS LBD --config CONFIG --reset-state' &
AGENT=$!
for i in $(seq 200); do [ -S SOCKET ] && break; sleep 0.1; done
sleep 1
kill -TERM $AGENT; wait $AGENT || true
journalctl --sync 2>/dev/null || sleep 1
journalctl --no-pager -t lbd -p warning -o cat > OUT/warnings.txt
journalctl --no-pager -t lbd -o json > OUT/all.json
"#;

pub fn journald_gets_priorities_and_fields_so_journalctl_p_warning_shows_only_warnings(
    _: &mut Env,
) -> Result<()> {
    ensure!(
        std::path::Path::new("/lib/systemd/systemd-journald").exists(),
        "systemd-journald is not installed (cargo xtask setup installs systemd)"
    );
    let ns = Netns::new("journal")?;
    let dir = TempDir::new("journal")?;
    let pins = format!("/sys/fs/bpf/lb-journal-{}", std::process::id());
    let socket = dir.0.join("lbd.sock");
    let config = dir.0.join("lb.yaml");
    std::fs::write(
        &config,
        format!(
            "pin_path: {pins}\nstate_dir: {}\napi: {{socket: {}}}\ninterfaces: [{{name: lo}}]\nlimits: {{max_vips: 4, max_backends: 16, ring_size: 251, conntrack_size: 4096}}\nvips:\n  - {{name: shop, address: 10.100.0.1, port: 80, health_check: {{type: none}}, backends: [{{address: 10.0.1.1}}]}}\n",
            dir.0.join("state").display(),
            socket.display()
        ),
    )?;
    let script = SCRIPT
        .replace("NETNS", ns.name())
        .replace("LBD", &bin("lbd")?.to_string_lossy())
        .replace("CONFIG", &config.to_string_lossy())
        .replace("SOCKET", &socket.to_string_lossy())
        .replace("OUT", &dir.0.to_string_lossy());
    let run = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script)
        .output()
        .context("run journald and lbd")?;
    // The agent left its data path pinned on purpose; take it away.
    let _ = Command::new(bin("lbd")?)
        .args(["unload", "--config"])
        .arg(&config)
        .output();
    ensure!(
        run.status.success(),
        "the journal run failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let warnings = std::fs::read_to_string(dir.0.join("warnings.txt"))?;
    let all = std::fs::read_to_string(dir.0.join("all.json"))?;
    let entries: Vec<serde_json::Value> = all
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |needle: &str| {
        entries
            .iter()
            .find(|e| e["MESSAGE"].as_str().is_some_and(|m| m.contains(needle)))
    };
    // A warning (--reset-state) and an info line (lbd running), as native
    // entries with their priorities and fields.
    let warn =
        find("--reset-state").context(format!("no --reset-state warning in the journal: {all}"))?;
    ensure!(
        warn["PRIORITY"] == "4",
        "warning at priority {}",
        warn["PRIORITY"]
    );
    ensure!(
        warn["LB_PIN_PATH"] == pins.as_str(),
        "the event's field is not a journal field: {warn}"
    );
    let info = find("lbd running").context(format!("no 'lbd running' line: {all}"))?;
    ensure!(
        info["PRIORITY"] == "5",
        "info at priority {}",
        info["PRIORITY"]
    );
    ensure!(info["LB_VIPS"] == "1", "no LB_VIPS field: {info}");
    // journalctl -p warning: the warning, not the info lines.
    ensure!(
        warnings.contains("--reset-state") && !warnings.contains("lbd running"),
        "journalctl -p warning showed:\n{warnings}"
    );
    println!(
        "    {} journal entries from lbd, {} at warning or worse",
        entries.len(),
        warnings.lines().count()
    );
    Ok(())
}
