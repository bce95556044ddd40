//! The Debian package: built by `cargo xtask package`, installed with dpkg
//! into a throwaway root (`dpkg --root`, maintainer scripts run outside it
//! with DPKG_ROOT set, which they honour), then checked: files and modes,
//! the conffile, the systemd unit (`systemd-analyze verify` against the
//! installed lbd), man pages that render, completions, and the installed
//! `lbd check` on the shipped example config. Purging removes it all and
//! touches nothing outside the root.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    netns::require_root,
    procs::{TempDir, cargo},
};

fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn build_package(out_dir: &Path) -> Result<PathBuf> {
    run(cargo(&[
        "run",
        "--quiet",
        "-p",
        "xtask",
        "--",
        "package",
        "--out-dir",
    ])
    .arg(out_dir))?;
    let deb = std::fs::read_dir(out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("no .deb written")?;
    Ok(deb)
}

/// An empty dpkg database under `root`.
fn dpkg_root(root: &Path) -> Result<()> {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "")?;
    }
    Ok(())
}

fn dpkg(root: &Path, args: &[&str]) -> Result<std::process::Output> {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // Scripts run on the host with DPKG_ROOT set; libc6 and libgcc-s1
        // are the host's, not the empty root's.
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args))
}

fn mode(p: &Path) -> Result<u32> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{} missing", p.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

#[test]
fn the_package_installs_into_a_throwaway_root_and_its_unit_verifies() -> Result<()> {
    require_root()?;
    let work = TempDir::new("package")?;
    let deb = build_package(&work.0.join("out"))?;
    let root = work.0.join("root");
    dpkg_root(&root)?;
    let pins_before = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.count())
        .unwrap_or(0);

    dpkg(&root, &["-i", deb.to_str().context("path")?])?;
    let status = dpkg(&root, &["-s", "lb"])?;
    ensure!(String::from_utf8_lossy(&status.stdout).contains("Status: install ok installed"));

    // Files and modes.
    for (path, want) in [
        ("usr/sbin/lbd", 0o755),
        ("usr/bin/lbctl", 0o755),
        ("lib/systemd/system/lbd.service", 0o644),
        ("lib/systemd/system/lb-decap@.service", 0o644),
        ("etc/lb/lb.yaml", 0o644),
        ("usr/share/man/man8/lbd.8.gz", 0o644),
        ("usr/share/man/man8/lbd-unload.8.gz", 0o644),
        ("usr/share/man/man1/lbctl.1.gz", 0o644),
        ("usr/share/man/man1/lbctl-drain.1.gz", 0o644),
        ("usr/share/man/man5/lb.yaml.5.gz", 0o644),
        ("usr/share/bash-completion/completions/lbctl", 0o644),
        ("usr/share/zsh/vendor-completions/_lbd", 0o644),
        ("usr/share/fish/vendor_completions.d/lbctl.fish", 0o644),
        ("usr/share/doc/lb/copyright", 0o644),
        ("usr/share/doc/lb/OPERATIONS.md", 0o644),
        ("usr/share/lb/prometheus/lb-rules.yml", 0o644),
        ("usr/share/lb/grafana/lb.json", 0o644),
    ] {
        let got = mode(&root.join(path))?;
        ensure!(got == want, "{path}: mode {got:o}, want {want:o}");
    }
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/lb.conffiles"))?;
    ensure!(
        conffiles.trim() == "/etc/lb/lb.yaml",
        "conffiles: {conffiles:?}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/lbctl"))?;
    ensure!(
        bash.contains("explain") && bash.contains("drain"),
        "bash completion lacks subcommands"
    );

    // The man pages render: lbctl-explain(1) describes the real flags,
    // lbd(8) how it exits, what it keeps where and what signals do,
    // lb.yaml(5) the configuration reference.
    for (page, needles) in [
        ("man1/lbctl-explain.1.gz", &["--syn", "--iface"][..]),
        (
            "man8/lbd.8.gz",
            &[
                "EXIT STATUS",
                "FILES",
                "SIGNALS",
                "SIGHUP",
                "/etc/lb/lb.yaml",
            ],
        ),
        (
            "man5/lb.yaml.5.gz",
            &["LB.YAML(5)", "conntrack_size", "health_check", "rate_limit"],
        ),
    ] {
        let out = run(Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(root.join("usr/share/man").join(page)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let missing: Vec<_> = needles.iter().filter(|n| !text.contains(*n)).collect();
        ensure!(missing.is_empty(), "{page} lacks {missing:?}:\n{text}");
    }

    // The installed lbd accepts the shipped example configuration.
    let lbd = root.join("usr/sbin/lbd");
    let check = run(Command::new(&lbd)
        .args(["check", "--config"])
        .arg(root.join("etc/lb/lb.yaml")))?;
    ensure!(String::from_utf8_lossy(&check.stdout).starts_with("configuration OK"));
    // ... and refuses a broken one, naming the field.
    let broken = work.0.join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(root.join("etc/lb/lb.yaml"))?
            .replace("ring_size: 65537", "ring_size: 65536"),
    )?;
    let refused = Command::new(&lbd)
        .args(["check", "--config"])
        .arg(&broken)
        .output()?;
    ensure!(!refused.status.success());
    ensure!(String::from_utf8_lossy(&refused.stderr).contains("limits.ring_size"));

    // The units, against the installed lbd: in a private mount namespace an
    // empty /usr/sbin holds just that binary, where the units expect it.
    // systemd-analyze exits 0 on warnings, so any output fails the test.
    // The decap template is checked as an instance.
    let unit = root.join("lib/systemd/system/lbd.service");
    let decap = work.0.join("lb-decap@eth0.service");
    std::fs::copy(root.join("lib/systemd/system/lb-decap@.service"), &decap)?;
    for unit in [&unit, &decap] {
        let verify = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"mount -t tmpfs lb-package-test /usr/sbin && cp "$1" /usr/sbin/lbd && exec systemd-analyze verify --man=no "$2""#,
            )
            .args(["sh"])
            .arg(&lbd)
            .arg(unit)
            .output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        ensure!(
            verify.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {}: {said}",
            unit.display()
        );
    }
    let unit_text = std::fs::read_to_string(&unit)?;
    for line in [
        "CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
    ] {
        ensure!(unit_text.lines().any(|l| l == line), "unit lacks {line:?}");
    }

    // Purge: everything goes, the configuration directory included, and
    // nothing outside the root was touched (no pins added or removed).
    dpkg(&root, &["--purge", "lb"])?;
    for path in [
        "usr/sbin/lbd",
        "etc/lb/lb.yaml",
        "etc/lb",
        "lib/systemd/system/lbd.service",
        "lib/systemd/system/lb-decap@.service",
    ] {
        ensure!(!root.join(path).exists(), "{path} left after purge");
    }
    let pins_after = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.count())
        .unwrap_or(0);
    ensure!(
        pins_before == pins_after,
        "/sys/fs/bpf changed: {pins_before} -> {pins_after} entries"
    );
    Ok(())
}
