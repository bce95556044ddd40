//! `cargo xtask lab up` / `lab down` as a user runs them (through the
//! `lb-demo` binary they call): every command `up` prints is run as
//! printed and does what it says, and `down` leaves no namespace, pin,
//! scratch directory or process behind.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, Result, ensure};
use lb_tests::{
    kept::{self, Way},
    procs::TempDir,
};

use crate::Env;

fn lb_demo(verb: &str, state: &Path, extra: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_lb-demo"))
        .arg(verb)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .output()
        .with_context(|| format!("lb-demo {verb}"))
}

/// Runs `lab down` when dropped, so a failed check leaves nothing up.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = lb_demo("down", &self.0, &[]);
    }
}

/// A printed command line, run by the shell as a user would paste it.
fn run_printed(command: &str, secs: u32) -> Result<Output> {
    Command::new("timeout")
        .arg(secs.to_string())
        .args(["sh", "-c", command])
        .output()
        .with_context(|| format!("run {command}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn lab_up_prints_ways_in_that_work_as_printed_and_lab_down_leaves_nothing_behind(
    _: &mut Env,
) -> Result<()> {
    up_try_down(false)
}

pub fn lab_up_stock_serves_the_vips_from_nginx_and_lab_down_leaves_nothing_behind(
    _: &mut Env,
) -> Result<()> {
    up_try_down(true)
}

/// `lab up` (with `--stock`: nginx on the backends), every way in tried as
/// printed, then `lab down` and a search for what is left.
fn up_try_down(stock: bool) -> Result<()> {
    let state = TempDir::new("lab-state")?;
    let flags: &[&str] = if stock { &["--stock"] } else { &[] };
    let up = lb_demo("up", &state.0, flags)?;
    let _down = Down(state.0.clone());
    let printed = text(&up);
    ensure!(up.status.success(), "lab up failed:\n{printed}");
    let ways: Vec<Way> =
        serde_json::from_str(&std::fs::read_to_string(state.0.join("ways.json"))?)?;
    let pid: i32 = std::fs::read_to_string(state.0.join("pid"))?
        .trim()
        .parse()?;
    let tag = format!("lbt-{pid}-");

    let again = lb_demo("up", &state.0, flags)?;
    ensure!(
        !again.status.success() && text(&again).contains("already up"),
        "a second lab up did not refuse: {}",
        text(&again)
    );

    let mut tried = 0;
    for w in &ways {
        ensure!(
            printed.contains(&w.command),
            "{} not printed:\n{printed}",
            w.command
        );
        let c = &w.command;
        if c.ends_with(" bash") {
            let o = run_printed(&format!("{c} -c 'ip -brief address'"), 10)?;
            ensure!(
                o.status.success() && text(&o).contains("10.10.0."),
                "{c}: not the client: {}",
                text(&o)
            );
        } else if c.contains(" curl ") {
            let o = run_printed(c, 15)?;
            let body = text(&o);
            ensure!(
                o.status.success() && ["a1", "a2", "b1", "b2", "c1", "c2"].contains(&body.trim()),
                "{c}: answered {body:?}, not a lab backend"
            );
            // The same request for the headers: who answered.
            let o = run_printed(&c.replace(" curl -s ", " curl -sI "), 15)?;
            let nginx = text(&o).to_ascii_lowercase().contains("server: nginx");
            ensure!(
                nginx == stock,
                "{c}: nginx answered {nginx}, want {stock}:\n{}",
                text(&o)
            );
        } else if c.contains(" iperf3 ") {
            let o = run_printed(c, 40)?;
            let out = text(&o);
            let receiver = out
                .lines()
                .find(|l| l.ends_with("receiver"))
                .with_context(|| format!("{c}: no receiver line:\n{out}"))?;
            ensure!(
                o.status.success() && !receiver.contains(" 0.00 bits/sec"),
                "{c}: moved nothing:\n{out}"
            );
            println!("    iperf3 as printed: {}", receiver.trim());
        } else if c.contains("lbctl") {
            let o = run_printed(c, 15)?;
            let out = text(&o);
            ensure!(
                o.status.success() && out.contains("agent") && out.contains("healthy"),
                "{c}:\n{out}"
            );
        } else {
            anyhow::bail!("a printed way in no check knows: {c}");
        }
        tried += 1;
    }
    ensure!(
        tried == 9,
        "want a shell, 4 curls, iperf3 and 3 lbctl, got {tried}"
    );

    let processes = kept::processes(&tag);
    ensure!(
        processes.len() >= 12,
        "the lab's namespaces hold only {processes:?}"
    );
    let down = lb_demo("down", &state.0, &[])?;
    ensure!(
        down.status.success() && text(&down).contains("the lab is down"),
        "lab down:\n{}",
        text(&down)
    );
    let alive: Vec<i32> = processes
        .iter()
        .copied()
        .chain([pid])
        .filter(|p| kept::running(*p))
        .collect();
    ensure!(alive.is_empty(), "still running after lab down: {alive:?}");
    let left = kept::leftovers(&tag);
    ensure!(left.is_empty(), "left after lab down: {left:?}");
    println!(
        "    {}{} ways in tried as printed; lab down stopped {} processes and left nothing",
        if stock { "nginx on the backends: " } else { "" },
        tried,
        processes.len() + 1
    );
    Ok(())
}
