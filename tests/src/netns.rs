//! Network namespaces and links that tests create and always remove.
//!
//! Every namespace is named `lbt-<pid>-<n>` so `cargo xtask test` can sweep
//! leftovers of a run that was killed before its destructors ran.

use std::{
    fs::File,
    os::fd::AsFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result, bail};

/// Prefix of every namespace the test suite creates.
pub const PREFIX: &str = "lbt-";

/// A named network namespace (`ip netns add`), deleted on drop together with
/// every link, address and process-less socket inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `lbt-<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip_in(&self.name, args)
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Moves the calling thread into the namespace until the guard drops.
    /// Use for in-process work that must see the namespace's interfaces
    /// (attaching XDP, BPF_PROG_TEST_RUN with FIB lookups).
    pub fn enter(&self) -> Result<NetnsEntered> {
        enter_named(&self.name)
    }

    /// Interface index of `ifname` inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/ifindex")])?;
        out.trim()
            .parse()
            .with_context(|| format!("ifindex of {ifname}: {out:?}"))
    }

    /// MAC address of `ifname` inside the namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        parse_mac(out.trim())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: could not delete netns {}: {e:#}", self.name);
        }
    }
}

/// [`Netns::enter`] by name, for a thread that cannot borrow the
/// [`Netns`] (the namespace must outlive the guard).
pub fn enter_named(name: &str) -> Result<NetnsEntered> {
    let here = File::open("/proc/thread-self/ns/net").context("open own netns")?;
    let target = File::open(format!("/var/run/netns/{name}"))
        .with_context(|| format!("open netns {name}"))?;
    setns(&target).with_context(|| format!("enter netns {name}"))?;
    Ok(NetnsEntered { previous: here })
}

/// Returns the thread to its previous namespace on drop.
pub struct NetnsEntered {
    previous: File,
}

impl Drop for NetnsEntered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.previous) {
            // Staying in a test namespace would make every later step on this
            // thread lie about where it runs.
            panic!("could not return to the original netns: {e:#}");
        }
    }
}

fn setns(ns: &File) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on a valid namespace fd only changes this thread's netns.
    let rc = unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
    }
    Ok(())
}

/// Creates a veth pair with one end in each namespace and brings both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// `ip -n <ns> args...` for a namespace known by name (its owner elsewhere).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<_> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("not a MAC address: {s:?}");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("not a MAC address: {s:?}"))?;
    }
    Ok(mac)
}

/// Fails unless running as root (or with the capabilities the suite needs).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "these tests create network namespaces and load BPF programs: run them as root (sudo -E cargo xtask test)"
        );
    }
    Ok(())
}

/// Sends raw Ethernet frames out of `ifname` in namespace `ns` (AF_PACKET),
/// each once, for feeding malformed input to an interface's peer.
pub fn send_raw(ns: &Netns, ifname: &str, frames: &[Vec<u8>]) -> Result<()> {
    let ifindex = ns.ifindex(ifname)?;
    let _in = ns.enter()?;
    PacketSocket::open(ifindex)?.send(frames, frames.len() as u64)?;
    Ok(())
}

/// A raw AF_PACKET socket bound to one interface of the namespace it was
/// opened in, sending whole Ethernet frames.
pub struct PacketSocket {
    fd: std::os::fd::OwnedFd,
}

impl PacketSocket {
    /// Frames per `sendmmsg` call.
    const BATCH: usize = 64;

    /// Opens the socket in the calling thread's namespace. Protocol 0: it
    /// only sends, so it receives nothing.
    pub fn open(ifindex: u32) -> Result<PacketSocket> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        anyhow::ensure!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let sock = PacketSocket { fd };
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                sock.raw(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        anyhow::ensure!(
            rc == 0,
            "bind AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        Ok(sock)
    }

    /// Hands frames straight to the driver, past the interface's qdisc.
    pub fn bypass_qdisc(&self) -> Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
    }

    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd as _;
        self.fd.as_raw_fd()
    }

    fn set_int(&self, level: i32, name: i32, value: i32) -> Result<()> {
        // SAFETY: value is an int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.raw(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<i32>() as u32,
            )
        };
        anyhow::ensure!(
            rc == 0,
            "setsockopt({level}, {name}): {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Sends `count` frames, `frames` in turn, and returns the seconds it
    /// took. A frame the driver drops (its peer's ring full) still counts
    /// as sent: what arrived is counted at the peer. Gives up after
    /// `SEND_LIMIT`, so a socket that stops taking frames ends the run.
    pub fn send(&self, frames: &[Vec<u8>], count: u64) -> Result<f64> {
        const SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
        anyhow::ensure!(!frames.is_empty() || count == 0, "no frames to send");
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; zero is a valid start.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; Self::BATCH];
        let mut sent = 0u64;
        // The frame the next batch starts with.
        let mut next = 0usize;
        let t0 = std::time::Instant::now();
        while sent < count {
            anyhow::ensure!(
                t0.elapsed() < SEND_LIMIT,
                "the AF_PACKET socket took {sent} of {count} frames in {SEND_LIMIT:?}"
            );
            let n = Self::BATCH.min((count - sent) as usize);
            for (k, m) in msgs.iter_mut().take(n).enumerate() {
                m.msg_hdr.msg_iov = &raw mut iovs[(next + k) % frames.len()];
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first n headers each point at one iovec of a
            // live frame; the kernel only reads them.
            let rc = unsafe { libc::sendmmsg(self.raw(), msgs.as_mut_ptr(), n as u32, 0) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                // A full socket buffer: offer the same batch again.
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == std::io::ErrorKind::WouldBlock
                {
                    continue;
                }
                return Err(anyhow::Error::new(e).context("sendmmsg on the AF_PACKET socket"));
            }
            // Frames the call did not take start the next batch.
            sent += rc as u64;
            next = (next + rc as usize) % frames.len();
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}
