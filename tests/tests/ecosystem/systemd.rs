//! The agent under a service manager: what systemd would hear on its
//! notify socket, heard here by a datagram listener of the test's own
//! (PID 1 on these machines is not systemd).

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail, ensure};
use lb_tests::{
    netns::Netns,
    procs::{Lbd, TempDir},
};

use super::{Env, SHOP_ON_LO};

/// One datagram as the service manager would get it.
#[derive(Clone, Debug)]
struct Heard {
    at: Instant,
    text: String,
}

/// A `NOTIFY_SOCKET` listener: every datagram, when it came.
struct NotifySocket {
    path: PathBuf,
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Result<Self> {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let heard = Arc::new(Mutex::new(vec![]));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (heard.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    h.lock().unwrap().push(Heard {
                        at: Instant::now(),
                        text,
                    });
                }
            }
        });
        Ok(Self {
            path,
            heard,
            stop,
            thread: Some(thread),
        })
    }

    fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// Waits until a datagram has a line `line`; returns it.
    fn wait_for(&self, line: &str, within: Duration) -> Result<Heard> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(h) = self
                .heard()
                .into_iter()
                .find(|h| h.text.lines().any(|l| l == line))
            {
                return Ok(h);
            }
            if Instant::now() > deadline {
                bail!("no {line:?} within {within:?}; heard {:?}", self.texts());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn texts(&self) -> Vec<String> {
        self.heard().into_iter().map(|h| h.text).collect()
    }

    /// Arrival times of `WATCHDOG=1` after `since`.
    fn watchdog_pings(&self, since: Instant) -> Vec<Instant> {
        self.heard()
            .into_iter()
            .filter(|h| h.at >= since && h.text.lines().any(|l| l == "WATCHDOG=1"))
            .map(|h| h.at)
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An agent on loopback in a namespace of its own, told to notify `sock`
/// (and to keep a watchdog of `watchdog`, if given).
fn agent(watchdog: Option<Duration>) -> Result<(Netns, TempDir, NotifySocket, Lbd)> {
    let ns = Netns::new("notify")?;
    let dir = TempDir::new("notify")?;
    let sock = NotifySocket::bind(&dir.0)?;
    let path = sock.path.to_string_lossy().into_owned();
    let usec = watchdog.map(|d| d.as_micros().to_string());
    let mut env = vec![("NOTIFY_SOCKET", path.as_str())];
    if let Some(u) = &usec {
        env.push(("WATCHDOG_USEC", u.as_str()));
    }
    let lbd = Lbd::start_env(&ns, SHOP_ON_LO, &[], "", &env)?;
    Ok((ns, dir, sock, lbd))
}

pub fn systemd_hears_ready_with_a_status_naming_vips_and_backends(_: &mut Env) -> Result<()> {
    let (_ns, _dir, sock, lbd) = agent(None)?;
    let ready = sock.wait_for("READY=1", Duration::from_secs(10))?;
    ensure!(
        ready
            .text
            .lines()
            .any(|l| l == "STATUS=1 VIPs, 2/2 backends healthy"),
        "READY without the status line: {:?}",
        ready.text
    );
    // READY is sent once the API is bound: it answers now.
    lbd.api_get("/v1/health")?;
    let readies = sock
        .texts()
        .iter()
        .filter(|t| t.lines().any(|l| l == "READY=1"))
        .count();
    ensure!(readies == 1, "READY sent {readies} times");
    Ok(())
}

pub fn the_watchdog_is_fed_from_the_main_loop_and_a_frozen_agent_misses_it(
    _: &mut Env,
) -> Result<()> {
    let interval = Duration::from_secs(2);
    let (_ns, _dir, sock, lbd) = agent(Some(interval))?;
    sock.wait_for("READY=1", Duration::from_secs(10))?;
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(4));
    let pings = sock.watchdog_pings(t0);
    ensure!(
        pings.len() >= 3,
        "only {} WATCHDOG=1 in 4 s with WATCHDOG_USEC=2s: {:?}",
        pings.len(),
        sock.texts()
    );
    let widest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    ensure!(
        widest < interval,
        "pings {widest:?} apart: systemd would have fired a healthy agent's watchdog"
    );
    // Freeze the agent as a hung main loop would be: the pings stop, and
    // the gap passes the interval — what makes systemd restart it.
    let pid = lbd.pid().expect("running").to_string();
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
    };
    kill("-STOP")?;
    let frozen = Instant::now();
    thread::sleep(interval + Duration::from_millis(1500));
    let during = sock.watchdog_pings(frozen + Duration::from_millis(100));
    kill("-CONT")?;
    ensure!(
        during.is_empty(),
        "a frozen agent fed the watchdog: {during:?}"
    );
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(3);
    while sock.watchdog_pings(thawed).is_empty() {
        ensure!(
            Instant::now() < deadline,
            "no WATCHDOG=1 after the agent was thawed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    println!(
        "    {} pings in 4 s (widest gap {widest:?}), none while frozen for {:?}",
        pings.len(),
        interval + Duration::from_millis(1500)
    );
    Ok(())
}

pub fn a_stopping_agent_says_so_before_it_exits(_: &mut Env) -> Result<()> {
    let (_ns, _dir, sock, mut lbd) = agent(None)?;
    sock.wait_for("READY=1", Duration::from_secs(10))?;
    ensure!(
        sock.watchdog_pings(Instant::now() - Duration::from_secs(60))
            .is_empty(),
        "WATCHDOG=1 sent without WATCHDOG_USEC"
    );
    lbd.stop()?;
    sock.wait_for("STOPPING=1", Duration::from_secs(5))?;
    Ok(())
}
