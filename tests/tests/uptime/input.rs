//! Bad input never takes anything down: hostile configuration files,
//! a reader that goes away, and frames mutated by the million.

mod frames;

use std::{
    os::{fd::FromRawFd as _, unix::process::ExitStatusExt as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    lab::lab_config,
    procs::{TempDir, bin},
};

pub use frames::{
    a_million_mutated_frames_never_abort_and_only_vip_packets_are_forwarded,
    mutated_tunnels_never_abort_decap_and_only_lb_tunnels_to_vips_are_unwrapped,
};

use crate::Env;

/// Runs `cmd` to completion or kills it after `bound`; returns the status,
/// stderr and the time it took.
fn run_bounded(
    cmd: &mut Command,
    bound: Duration,
) -> Result<(std::process::ExitStatus, String, Duration)> {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait()? {
            let err = reader.join().unwrap_or_default();
            return Ok((status, err, t0.elapsed()));
        }
        if t0.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A hostile configuration file: what it is, its bytes, and a field the
/// rejection must name (if it must be rejected).
type Hostile = (&'static str, Vec<u8>, Option<&'static str>);

fn hostile_configs() -> Result<Vec<Hostile>> {
    let lab = lab_config()?;
    let deep = |open: &str, close: &str, n: usize| {
        format!(
            "node: {{name: x}}\ninterfaces: [{{name: lo}}]\nvips: {}{}\n",
            open.repeat(n),
            close.repeat(n)
        )
    };
    let mut ten_mb = lab.clone();
    let mut i = 0u32;
    ten_mb.push_str("  - name: big\n    address: 10.200.0.1\n    port: 80\n    backends:\n");
    while ten_mb.len() < 10 << 20 {
        let [_, a, b, c] = i.to_be_bytes();
        ten_mb.push_str(&format!("      - {{address: 10.{a}.{b}.{c}, weight: 1}}\n"));
        i += 1;
    }
    let laughs = {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 9].join(",");
            s.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        s
    };
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    Ok(vec![
        ("an empty file", vec![], None),
        ("only whitespace", b"  \n\n\t\n".to_vec(), None),
        ("only a document marker", b"---\n".to_vec(), None),
        ("the lab config cut in half", lab.as_bytes()[..lab.len() / 2].to_vec(), None),
        (
            "a duration of 1e20 seconds",
            format!("{lab}dataplane: {{udp_idle_timeout: 1e20s}}\n").into_bytes(),
            Some("dataplane.udp_idle_timeout"),
        ),
        (
            "a port of 10^23",
            lab.replacen("port: 80", "port: 99999999999999999999999", 1).into_bytes(),
            Some("vips[0].port"),
        ),
        (
            "a negative ring size",
            lab.replace("ring_size: 65537", "ring_size: -1").into_bytes(),
            Some("limits.ring_size"),
        ),
        (
            "a float beyond f64",
            lab.replace("max_vips: 16", "max_vips: 1e400").into_bytes(),
            Some("limits"),
        ),
        ("sequences nested 100000 deep", deep("[", "]", 100_000).into_bytes(), None),
        ("mappings nested 50000 deep", deep("{a: ", "}", 50_000).into_bytes(), None),
        (
            "blocks indented 3000 deep",
            (0..3000).map(|i| format!("{}a:\n", " ".repeat(2 * i))).collect::<String>().into_bytes(),
            None,
        ),
        (
            "every field the wrong type",
            b"node: 5\ninterfaces: x\nlimits: []\nvips: {a: 1}\n".to_vec(),
            Some("node"),
        ),
        (
            "an unknown key",
            format!("{lab}frobnicate: true\n").into_bytes(),
            Some("frobnicate"),
        ),
        ("ten megabytes of backends", ten_mb.into_bytes(), None),
        ("a billion laughs", laughs.into_bytes(), None),
        ("binary junk", junk, None),
        ("invalid UTF-8", b"node: {name: \xff\xfe}\n".to_vec(), None),
        (
            "JSON with a number beyond f64",
            br#"{"node": {"name": "x"}, "interfaces": [{"name": "lo"}], "limits": {"max_vips": 1e400}}"#.to_vec(),
            Some("limits"),
        ),
    ])
}

/// `lbd check` exits 0, or 2 naming what is wrong — never 101, never a
/// signal, never a hang — on every hostile file.
pub fn lbd_check_exits_0_or_2_on_hostile_configs_within_seconds(_: &mut Env) -> Result<()> {
    let dir = TempDir::new("hostile")?;
    let lbd = bin("lbd")?;
    let mut slowest = Duration::ZERO;
    for (name, content, field) in hostile_configs()? {
        let path = dir.0.join("lb.yaml");
        std::fs::write(&path, &content)?;
        let (status, stderr, took) = run_bounded(
            Command::new(&lbd).arg("check").arg("--config").arg(&path),
            Duration::from_secs(20),
        )
        .with_context(|| format!("lbd check on {name}"))?;
        slowest = slowest.max(took);
        ensure!(
            status.signal().is_none(),
            "{name}: killed by signal {:?}",
            status.signal()
        );
        let code = status.code().unwrap_or(-1);
        ensure!(code == 0 || code == 2, "{name}: exit {code}: {stderr}");
        ensure!(!stderr.contains("panicked"), "{name}: {stderr}");
        if code == 2 {
            ensure!(
                stderr.trim().len() > 10,
                "{name}: rejected without a reason"
            );
        }
        if let Some(f) = field {
            ensure!(
                code == 2 && stderr.contains(f),
                "{name}: want a rejection naming {f}, got exit {code}: {stderr}"
            );
        }
    }
    println!(
        "    {} hostile files, slowest {slowest:.1?}",
        hostile_configs()?.len()
    );
    Ok(())
}

/// Runs `cmd` with its standard output a pipe nobody reads any more.
fn into_closed_pipe(cmd: &mut Command) -> Result<(std::process::ExitStatus, String)> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two descriptors into `fds`.
    ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe");
    // SAFETY: fds[0] is ours to close; the reader is gone before any write.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is a fresh descriptor owned by nothing else.
    let write_end = unsafe { Stdio::from_raw_fd(fds[1]) };
    let out = cmd.stdout(write_end).stderr(Stdio::piped()).output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `lbd check | head -1` and friends: the reader going away ends the
/// command quietly, status 0, no panic.
pub fn output_into_a_closed_pipe_ends_quietly(_: &mut Env) -> Result<()> {
    let dir = TempDir::new("pipe")?;
    let config = dir.0.join("lb.yaml");
    std::fs::write(&config, lab_config()?)?;
    let (lbd, lbctl) = (bin("lbd")?, bin("lbctl")?);
    let runs: Vec<(&str, Command)> = vec![
        ("lbd check", {
            let mut c = Command::new(&lbd);
            c.arg("check").arg("--config").arg(&config);
            c
        }),
        ("lbd check --json", {
            let mut c = Command::new(&lbd);
            c.args(["check", "--json", "--config"]).arg(&config);
            c
        }),
        ("lbd completions bash", {
            let mut c = Command::new(&lbd);
            c.args(["completions", "bash"]);
            c
        }),
        ("lbctl completions zsh", {
            let mut c = Command::new(&lbctl);
            c.args(["completions", "zsh"]);
            c
        }),
    ];
    for (what, mut cmd) in runs {
        let (status, stderr) = into_closed_pipe(&mut cmd)?;
        ensure!(
            status.code() == Some(0) && !stderr.contains("panicked"),
            "{what} | (closed): {status}: {stderr}"
        );
    }
    Ok(())
}
