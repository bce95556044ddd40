//! The Vagrant lab (`vagrant/`): the Vagrantfile passes `vagrant validate`
//! (Debian's vagrant; provider options are ignored, so no hypervisor or
//! plugin is needed), the provisioning scripts parse, and the LB hosts'
//! configuration, filled in as `provision/lb.sh` does, passes `lbd check`.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, ensure};
use lb_tests::procs::{TempDir, bin};

fn lab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vagrant")
}

#[test]
fn the_vagrantfile_validates() -> Result<()> {
    let home = TempDir::new("vagrant-home")?;
    let out = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(lab_dir())
        .env("VAGRANT_HOME", &home.0)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .context("run vagrant (cargo xtask setup installs it)")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "vagrant validate failed:\n{said}");
    ensure!(said.contains("validated successfully"), "{said}");
    // Every machine the README talks about is defined.
    for vm in [
        "router", "lb1", "lb2", "aws1", "aws2", "gcp1", "gcp2", "client",
    ] {
        ensure!(said.contains(&format!("{vm}:")), "no VM {vm} in:\n{said}");
    }
    Ok(())
}

#[test]
fn the_provisioning_scripts_parse_and_the_lab_config_checks() -> Result<()> {
    let provision = lab_dir().join("provision");
    for entry in std::fs::read_dir(&provision)? {
        let script = entry?.path();
        let out = Command::new("sh").arg("-n").arg(&script).output()?;
        ensure!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let work = TempDir::new("vagrant-config")?;
    for mode in ["driver", "generic"] {
        let config = std::fs::read_to_string(lab_dir().join("config/lb.yaml"))?
            .replace("@EDGE@", "eth1")
            .replace("@XDP_MODE@", mode);
        let path = work.0.join(format!("lb-{mode}.yaml"));
        std::fs::write(&path, config)?;
        let out = Command::new(bin("lbd")?)
            .args(["check", "--config"])
            .arg(&path)
            .output()?;
        ensure!(
            out.status.success(),
            "lab config ({mode}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
