//! `cargo xtask setup`: make a fresh Debian 12 machine able to build and test
//! lb. Every step checks first and skips what is already in place, so a
//! second run is fast and changes nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{cargo_home, output, run_status, step};

/// Debian packages the tests, the demo and the benchmarks use.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",          // ip netns / veth / addresses
    "bpftool",           // inspecting programs and maps, permission probe
    "ethtool",           // veth offload settings in the lab
    "etcd-server",       // the etcd feed's tests run a real etcd
    "etcd-client",       // etcdctl: the tests set up etcd's users and TLS with it
    "openssl",           // the tests' throwaway CA and certificates (API HTTPS, etcd TLS)
    "protobuf-compiler", // protoc: the etcd-client crate's build compiles etcd's protos
    "libprotobuf-dev",   // google/protobuf/*.proto, which etcd's protos import
    "bird2",             // BGP speaker of every LB host and the lab's router
    "util-linux",        // nsenter: lbd in a test namespace without remounting /sys
    "curl",              // the end-to-end tests talk to the API socket with it
    "systemd", // systemd-analyze verify; systemd-journald and journalctl for the journal test
    "prometheus", // promtool checks and unit-tests the shipped alert rules; a real scrape
    "man-db",  // the package test renders the generated man pages
    "nginx-light", // stock HTTP server on the lab's backends (ecosystem test, demo --keep)
    "iperf3",  // stock throughput server and client through every forwarding mode
    "tmux",    // a pseudo-terminal for the lbctl top test
    "libelf-dev", // libbpf-sys (the libbpf-rs interop test) builds libbpf against it
    "zlib1g-dev", // and zlib
    "pkg-config", // which it finds with pkg-config
    "vagrant", // `vagrant validate` checks vagrant/Vagrantfile
];

const BPF_LINKER_VERSION: &str = "0.13";
/// bpf-linker links against the LLVM that ships inside the nightly toolchain
/// (there is no prebuilt bpf-linker download for this machine).
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";

pub fn run() -> Result<()> {
    step("setup: checking prerequisites");
    require_root()?;
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    bpffs()?;
    bpf_permission()?;
    eprintln!("    setup complete");
    Ok(())
}

fn require_root() -> Result<()> {
    // SAFETY-free: reading the effective uid through /proc avoids libc here.
    let status = fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        bail!(
            "not running as root: lb loads XDP programs, mounts bpffs and creates network namespaces; run `sudo -E cargo xtask ...` or log in as root"
        );
    }
    Ok(())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("    debian packages: all present");
        return Ok(());
    }
    eprintln!("    debian packages: installing {}", missing.join(" "));
    run_status(Command::new("apt-get").arg("update").arg("-qq"))
        .context("apt-get update failed: check network access to the Debian mirrors")?;
    run_status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install {} failed", missing.join(" ")))
}

fn nightly_rust_src() -> Result<()> {
    let Some(installed) = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ])) else {
        bail!(
            "the nightly Rust toolchain is missing (the eBPF programs need it): run `rustup toolchain install nightly --component rust-src`"
        );
    };
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("    nightly rust-src: present");
        return Ok(());
    }
    eprintln!("    nightly rust-src: installing");
    run_status(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .context("`rustup component add rust-src --toolchain nightly` failed")
}

fn bpf_linker() -> Result<()> {
    // Running it (not just finding it) also catches a binary whose LLVM
    // library went away with a nightly update.
    if let Some(version) = output(Command::new("bpf-linker").arg("--version")) {
        if version
            .split_whitespace()
            .nth(1)
            .is_some_and(|v| v.starts_with(BPF_LINKER_VERSION))
        {
            eprintln!("    bpf-linker: {} present", version.trim());
            return Ok(());
        }
        eprintln!(
            "    bpf-linker: found {}, want {BPF_LINKER_VERSION}.x",
            version.trim()
        );
    }
    eprintln!(
        "    bpf-linker: building {BPF_LINKER_VERSION}.x from crates.io against nightly's LLVM (about 3 minutes)"
    );
    let prefix = llvm_prefix()?;
    run_status(
        Command::new("cargo")
            .args(["install", "--force", "bpf-linker", "--version"])
            .arg(format!("~{BPF_LINKER_VERSION}"))
            .args(["--no-default-features", "--features", BPF_LINKER_LLVM_FEATURE])
            .env("LLVM_PREFIX", &prefix)
            // Build with the default (stable) toolchain even when invoked from
            // inside a rustup-managed nightly context.
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("building bpf-linker failed (see the cargo output above); it needs the nightly toolchain's libLLVM and a C compiler")?;
    Ok(())
}

/// A folder whose `lib/` exposes nightly's libLLVM under the names the
/// llvm-sys build looks for. It stays in place: bpf-linker's RUNPATH points
/// at it.
fn llvm_prefix() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("cannot run `rustc +nightly`: install the nightly toolchain")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = fs::read_dir(&lib)
        .with_context(|| format!("read {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so.") && name.contains("-rust-"))
        .with_context(|| {
            format!(
                "no libLLVM.so.*-rust-* in {}: the nightly toolchain ships without LLVM?",
                lib.display()
            )
        })?;
    let prefix = cargo_home().join("lb-bpf-linker-llvm");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib).with_context(|| format!("create {}", prefix_lib.display()))?;
    for link_name in ["libLLVM.so", llvm.as_str()] {
        let link = prefix_lib.join(link_name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&llvm), &link)
            .with_context(|| format!("symlink {}", link.display()))?;
    }
    Ok(prefix)
}

fn bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        (f.nth(1), f.next()) == (Some("/sys/fs/bpf"), Some("bpf"))
    }) {
        eprintln!("    bpffs: mounted at /sys/fs/bpf");
        return Ok(());
    }
    eprintln!("    bpffs: mounting at /sys/fs/bpf");
    fs::create_dir_all("/sys/fs/bpf").ok();
    run_status(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"])).context(
        "could not mount bpffs at /sys/fs/bpf (needs root and a kernel with CONFIG_BPF_SYSCALL)",
    )
}

fn bpf_permission() -> Result<()> {
    if output(Command::new("bpftool").args(["prog", "list"])).is_none() {
        bail!(
            "BPF is not permitted here (`bpftool prog list` failed): run as root with CAP_BPF/CAP_SYS_ADMIN, outside a container that filters bpf(2)"
        );
    }
    eprintln!("    BPF syscall: permitted");
    Ok(())
}
