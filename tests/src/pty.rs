//! A program on a pseudo-terminal, for full-screen tools (`lbctl top`):
//! a tmux server of the test's own (its own socket, so it never touches a
//! user's sessions) runs the command in a window of a fixed size; the test
//! types keys and reads the screen as text. Killed when dropped.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::procs::TempDir;

pub struct Pty {
    socket: PathBuf,
    status: PathBuf,
    _dir: TempDir,
}

impl Pty {
    /// Starts `command` (a shell command line) on a `cols`×`rows` terminal.
    /// The window stays after the command exits, so its last screen can be
    /// read.
    pub fn start(command: &str, cols: u16, rows: u16) -> Result<Self> {
        let dir = TempDir::new("pty")?;
        let socket = dir.0.join("tmux.sock");
        let status = dir.0.join("status");
        let command = format!("{command}; echo $? > {}", status.display());
        let pty = Self {
            socket,
            status,
            _dir: dir,
        };
        pty.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &command,
            ";",
            "set-option",
            "-t",
            "t",
            "remain-on-exit",
            "on",
        ])?;
        Ok(pty)
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("run tmux (cargo xtask setup installs it)")?;
        ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `key` (tmux key names: `q`, `Escape`, `C-c`).
    pub fn send(&self, key: &str) -> Result<()> {
        self.tmux(&["send-keys", "-t", "t", key]).map(|_| ())
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen satisfies `ok`; returns it.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let end = Instant::now() + within;
        loop {
            let s = self.screen()?;
            if ok(&s) {
                return Ok(s);
            }
            if Instant::now() > end {
                bail!("{what} not on the screen within {within:?}; it shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The command's exit status once it has exited, `None` while it
    /// runs. The shell around it writes the status to a file: tmux's own
    /// `pane_dead_status` is sometimes still empty for a dead pane.
    pub fn exit_status(&self) -> Result<Option<i32>> {
        match std::fs::read_to_string(&self.status) {
            Ok(s) if s.ends_with('\n') => Ok(Some(s.trim().parse().context("exit status")?)),
            _ => Ok(None),
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
