//! `cargo xtask package`: the Debian package `lb` — lbd, lbctl, the systemd
//! units (`lbd.service` on LB hosts, `lb-decap@IFACE.service` on backends),
//! a commented `/etc/lb/lb.yaml`, shell completions and man pages
//! generated from the binaries' own CLI definitions, and the operations
//! guide. Assembled with `dpkg-deb` (part of every Debian system): the
//! layout is small and needs no packaging tool installed. The sources of
//! everything that is not a binary are in `packaging/`.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util::{cargo, output, run_status, step, workspace_root};

const PACKAGE: &str = "lb";

pub fn run(out_dir: Option<&Path>) -> Result<PathBuf> {
    crate::setup::run()?;
    step("cargo build --release -p lb-userspace --bins");
    cargo(&["build", "--release", "-p", "lb-userspace", "--bins"])?;
    let ws = workspace_root();
    let bins = ws.join("target/release");
    let out_dir = out_dir.map_or_else(|| ws.join("target/package"), Path::to_path_buf);
    let root = out_dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("remove {}", root.display()))?;
    }
    step(&format!(
        "assembling the package tree in {}",
        root.display()
    ));

    let pkg = ws.join("packaging");
    let doc = root.join("usr/share/doc").join(PACKAGE);
    let units = root.join("lib/systemd/system");
    let unit = |name: &str| (pkg.join(name), units.join(name), 0o644);
    let doc_file = |from: PathBuf, name: &str| (from, doc.join(name), 0o644);
    for (from, to, mode) in [
        (bins.join("lbd"), root.join("usr/sbin/lbd"), 0o755),
        (bins.join("lbctl"), root.join("usr/bin/lbctl"), 0o755),
        unit("lbd.service"),
        unit("lb-decap@.service"),
        (pkg.join("lb.yaml"), root.join("etc/lb/lb.yaml"), 0o644),
        doc_file(pkg.join("debian/copyright"), "copyright"),
        doc_file(ws.join("README.md"), "README.md"),
        doc_file(ws.join("docs/OPERATIONS.md"), "OPERATIONS.md"),
        (
            pkg.join("prometheus/lb-rules.yml"),
            root.join("usr/share/lb/prometheus/lb-rules.yml"),
            0o644,
        ),
        (
            pkg.join("grafana/lb.json"),
            root.join("usr/share/lb/grafana/lb.json"),
            0o644,
        ),
    ] {
        install(&from, &to, mode)?;
    }

    // Man pages and completions come from the binaries themselves, so they
    // always match the flags this build accepts.
    for (bin, section) in [("lbd", "8"), ("lbctl", "1")] {
        let dir = root.join(format!("usr/share/man/man{section}"));
        fs::create_dir_all(&dir)?;
        let mut man = Command::new(bins.join(bin));
        man.arg("man").arg(&dir);
        if bin == "lbd" {
            // lb.yaml(5), from the configuration reference.
            let five = root.join("usr/share/man/man5");
            fs::create_dir_all(&five)?;
            man.arg("--config-dir").arg(&five);
        }
        run_status(&mut man)?;
        for page in fs::read_dir(&dir)? {
            let page = page?.path();
            if page.extension().is_some_and(|e| e == section) {
                run_status(Command::new("gzip").args(["-9n"]).arg(&page))?;
            }
        }
        if bin == "lbd" {
            run_status(
                Command::new("gzip")
                    .args(["-9n"])
                    .arg(root.join("usr/share/man/man5/lb.yaml.5")),
            )?;
        }
        for (shell, path) in [
            (
                "bash",
                format!("usr/share/bash-completion/completions/{bin}"),
            ),
            ("zsh", format!("usr/share/zsh/vendor-completions/_{bin}")),
            (
                "fish",
                format!("usr/share/fish/vendor_completions.d/{bin}.fish"),
            ),
        ] {
            let script = Command::new(bins.join(bin))
                .args(["completions", shell])
                .output()
                .with_context(|| format!("{bin} completions {shell}"))?;
            if !script.status.success() || script.stdout.is_empty() {
                bail!("{bin} completions {shell} failed");
            }
            write(&root.join(path), &script.stdout, 0o644)?;
        }
    }

    // Control files.
    let debian = root.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &pkg.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    write(&debian.join("conffiles"), b"/etc/lb/lb.yaml\n", 0o644)?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture")?;
    let arch = arch.trim();
    let glibc = glibc_needed(&[&bins.join("lbd"), &bins.join("lbctl")])?;
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: lb developers <lb@lb-project.invalid>\n\
         Section: net\n\
         Priority: optional\n\
         Depends: libc6 (>= {glibc}), libgcc-s1\n\
         Installed-Size: {size}\n\
         Homepage: https://github.com/lb-project/lb\n\
         Description: XDP layer-4 load balancer for services spread over several clouds\n \
         lb matches virtual IPs in the NIC driver with an eBPF/XDP program, picks a\n \
         backend by weighted Maglev hashing with a connection table, and sends the\n \
         packet on in a tunnel (IPIP, IPv6-in-IPv6, GUE) or by L2 direct server\n \
         return. The agent lbd health-checks backends, applies local-first,\n \
         active-active and active-passive policies across clouds, and restarts or\n \
         upgrades without breaking established flows; lbctl inspects and steers it.\n",
        size = dir_size_kib(&root)?,
    );
    write(&debian.join("control"), control.as_bytes(), 0o644)?;

    let deb = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    step(&format!("dpkg-deb --build {}", deb.display()));
    run_status(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    eprintln!("    {}", deb.display());
    Ok(deb)
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("read {}", from.display()))?;
    write(to, &bytes, mode)
}

fn write(to: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    fs::write(to, bytes).with_context(|| format!("write {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The newest `GLIBC_2.N` symbol version the binaries reference: the
/// package's minimum libc6.
fn glibc_needed(bins: &[&Path]) -> Result<String> {
    let mut newest = 0u32;
    for bin in bins {
        let bytes = fs::read(bin).with_context(|| format!("read {}", bin.display()))?;
        let tag = b"GLIBC_2.";
        for (i, w) in bytes.windows(tag.len()).enumerate() {
            if w == tag {
                let digits: String = bytes[i + tag.len()..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .map(|&b| b as char)
                    .collect();
                newest = newest.max(digits.parse().unwrap_or(0));
            }
        }
    }
    if newest == 0 {
        bail!("no GLIBC symbol versions found in {bins:?}");
    }
    Ok(format!("2.{newest}"))
}

/// Installed size in KiB, as dpkg counts it (files only, rounded up).
fn dir_size_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            if entry.file_name() != "DEBIAN" {
                total += dir_size_kib(&entry.path())?;
            }
        } else {
            total += meta.len().div_ceil(1024);
        }
    }
    Ok(total)
}
