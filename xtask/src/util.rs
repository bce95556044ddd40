//! Process helpers shared by the tasks.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// Prints a progress line for a step.
pub fn step(what: &str) {
    eprintln!("==> {what}");
}

/// PATH with `$CARGO_HOME/bin` first, so tools `cargo install`ed by setup
/// (bpf-linker) are found even where the shell's PATH lacks it.
pub fn path_with_cargo_bin() -> OsString {
    let mut dirs = vec![cargo_home().join("bin")];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).expect("PATH entries are valid")
}

pub fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// Runs `cargo <args>` in the workspace root with the setup's PATH.
pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace_root());
    crate::cargo_env::without_package_env(&mut cmd);
    run_status(&mut cmd)
}

/// Runs `cargo <args>` with the nightly toolchain (through rustup, as
/// `+nightly` only works through the rustup proxy).
pub fn cargo_nightly(args: &[&str]) -> Result<()> {
    run_status(
        Command::new("rustup")
            .args(["run", "nightly", "cargo"])
            .args(args)
            .current_dir(workspace_root())
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC"),
    )
}

/// Runs a command with inherited stdio; fails if it exits non-zero.
pub fn run_status(cmd: &mut Command) -> Result<()> {
    cmd.env("PATH", path_with_cargo_bin());
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command and returns its stdout, or None if it could not run or
/// failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    cmd.env("PATH", path_with_cargo_bin());
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Removes network namespaces left by an earlier test run that was killed
/// before its destructors ran (they are all named `lbt-<pid>-*`). Those of
/// a process still running — a lab from `lab up`, another test run — stay.
pub fn sweep_stale_namespaces() {
    let Some(list) = output(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let owner = name
            .strip_prefix("lbt-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if name.starts_with("lbt-") && !alive {
            eprintln!("    removing stale test namespace {name}");
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
