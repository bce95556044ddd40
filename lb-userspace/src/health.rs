//! Health checks: probes (TCP connect, HTTP(S) GET with an expected status,
//! UDP echo, DNS query), a rise/fall state machine per backend, and a
//! scheduler with jittered intervals and bounded concurrency. Verdicts (only
//! transitions) go to the agent over a channel.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
    time::timeout,
};

use crate::{
    balancer::VipIdent,
    config::{Config, HealthCheck, Probe},
};

/// One backend to watch.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub vip: VipIdent,
    pub vip_name: String,
    pub backend: IpAddr,
    pub port: u16,
    pub check: HealthCheck,
}

/// A change of a backend's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub vip: VipIdent,
    pub backend: IpAddr,
    pub up: bool,
    pub reason: String,
}

/// Rise/fall hysteresis: `rise` successes in a row to come up, `fall`
/// failures in a row to go down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub up: bool,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Tracker {
    pub fn new(initially_up: bool, rise: u32, fall: u32) -> Self {
        Self {
            up: initially_up,
            rise,
            fall,
            successes: 0,
            failures: 0,
        }
    }

    /// Feeds one probe result; returns the new state on a transition.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.up && self.successes >= self.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.up && self.failures >= self.fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

/// Every backend of every VIP with a probe.
pub fn targets(c: &Config) -> Vec<Target> {
    let mut out = vec![];
    for v in &c.vips {
        if v.health_check.probe == Probe::None {
            continue;
        }
        for b in &v.backends {
            let port =
                v.health_check
                    .port
                    .or(b.port)
                    .unwrap_or(if v.port == 0 { 80 } else { v.port });
            out.push(Target {
                vip: crate::balancer::vip_ident(v),
                vip_name: v.name.clone(),
                backend: b.address,
                port,
                check: v.health_check.clone(),
            });
        }
    }
    out
}

/// Runs one probe; `Err` explains the failure.
pub async fn probe(t: &Target) -> Result<(), String> {
    let addr = SocketAddr::new(t.backend, t.port);
    let deadline = t.check.timeout;
    let run = async {
        match &t.check.probe {
            Probe::None => Ok(()),
            Probe::Tcp => TcpStream::connect(addr)
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp connect {addr}: {e}")),
            Probe::Http {
                path,
                expect_status,
                host,
            } => {
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("tcp connect {addr}: {e}"))?;
                http_get(s, addr, path, *expect_status, host.as_deref()).await
            }
            Probe::Https {
                path,
                expect_status,
                host,
            } => {
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("tcp connect {addr}: {e}"))?;
                let name = host.clone().unwrap_or_else(|| t.backend.to_string());
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("tls name {name}: {e}"))?;
                let tls = tls_connector()
                    .connect(server_name, s)
                    .await
                    .map_err(|e| format!("tls handshake {addr}: {e}"))?;
                http_get(tls, addr, path, *expect_status, host.as_deref()).await
            }
            Probe::Udp { payload } => udp_exchange(addr, payload.as_bytes(), |_| Ok(())).await,
            Probe::Dns { query } => {
                let id = fastrand::u16(..);
                let msg = dns_query(id, query);
                udp_exchange(addr, &msg, |resp| dns_check(id, resp)).await
            }
        }
    };
    match timeout(deadline, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {addr} within {deadline:?}")),
    }
}

async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    path: &str,
    expect: u16,
    host: Option<&str>,
) -> Result<(), String> {
    let host = host.map(str::to_string).unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lbd-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("http write {addr}: {e}"))?;
    let mut buf = vec![0u8; 512];
    let mut got = 0;
    // Only the status line matters.
    while !buf[..got].windows(2).any(|w| w == b"\r\n") && got < buf.len() {
        let n = s
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("http read {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "http {addr}: no status line in {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    if status == expect {
        Ok(())
    } else {
        Err(format!("http {addr}{path}: status {status}, want {expect}"))
    }
}

async fn udp_exchange(
    addr: SocketAddr,
    msg: &[u8],
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp connect {addr}: {e}"))?;
    sock.send(msg)
        .await
        .map_err(|e| format!("udp send {addr}: {e}"))?;
    let mut buf = vec![0u8; 1500];
    let n = sock
        .recv(&mut buf)
        .await
        .map_err(|e| format!("udp receive from {addr}: {e}"))?;
    check(&buf[..n])
}

/// A DNS query for `name` (type A, recursion desired).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

/// A response to our query that is not a server failure or refusal.
pub fn dns_check(id: u16, resp: &[u8]) -> Result<(), String> {
    if resp.len() < 12 {
        return Err(format!("dns: {} byte reply", resp.len()));
    }
    if u16::from_be_bytes([resp[0], resp[1]]) != id || resp[2] & 0x80 == 0 {
        return Err("dns: reply does not answer our query".into());
    }
    match resp[3] & 0x0f {
        2 => Err("dns: SERVFAIL".into()),
        5 => Err("dns: REFUSED".into()),
        _ => Ok(()),
    }
}

/// TLS for HTTPS checks. Backends are addressed by IP and often carry
/// internal certificates, so the check verifies that TLS works and the
/// HTTP status, not the certificate chain.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let cfg = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Arc::new(cfg)
    });
    tokio_rustls::TlsConnector::from(cfg.clone())
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type TrackerKey = (VipIdent, IpAddr);
type Trackers = Arc<std::sync::Mutex<BTreeMap<TrackerKey, Tracker>>>;

/// The running checks; dropping it stops them.
pub struct Checker {
    /// One task per target, with the target it runs.
    tasks: BTreeMap<TrackerKey, (Target, JoinHandle<()>)>,
    trackers: Trackers,
    limit: Arc<Semaphore>,
    max_concurrent: usize,
    tx: mpsc::Sender<Verdict>,
    /// Tasks started so far (tests check what a change restarts).
    started: usize,
}

impl Drop for Checker {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

impl Checker {
    /// Starts one task per target. `previous`, a checker being replaced,
    /// is updated in place instead (see [`Checker::update`]).
    pub fn start(
        targets: Vec<Target>,
        max_concurrent: usize,
        tx: mpsc::Sender<Verdict>,
        previous: Option<Checker>,
    ) -> Self {
        let mut c = previous.unwrap_or_else(|| Self {
            tasks: BTreeMap::new(),
            trackers: Arc::default(),
            limit: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            tx,
            started: 0,
        });
        c.update(targets, max_concurrent);
        c
    }

    /// Makes the running checks match `targets`. A target that did not
    /// change keeps its task and schedule: configuration churn (API pushes,
    /// etcd puts, reloads) must not postpone probes and so blind the health
    /// checks. Changed and new targets (re)start, gone ones stop. Trackers
    /// carry over for every backend still checked, so a reload does not
    /// make backends flap.
    pub fn update(&mut self, targets: Vec<Target>, max_concurrent: usize) {
        if max_concurrent != self.max_concurrent {
            // Running tasks hold the old semaphore: restart them all.
            self.limit = Arc::new(Semaphore::new(max_concurrent));
            self.max_concurrent = max_concurrent;
            for (_, (_, task)) in std::mem::take(&mut self.tasks) {
                task.abort();
            }
        }
        let mut old = std::mem::take(&mut self.tasks);
        let shared = self.trackers.clone();
        let mut trackers = shared.lock().expect("not poisoned");
        for t in targets {
            let key = (t.vip, t.backend);
            match old.remove(&key) {
                Some((running, task)) if running == t => {
                    self.tasks.insert(key, (running, task));
                }
                replaced => {
                    if let Some((_, task)) = replaced {
                        task.abort();
                    }
                    let tracker = trackers.get(&key).cloned().unwrap_or_else(|| {
                        Tracker::new(t.check.initially_up, t.check.rise, t.check.fall)
                    });
                    trackers.insert(
                        key,
                        Tracker {
                            rise: t.check.rise,
                            fall: t.check.fall,
                            ..tracker
                        },
                    );
                    let task = spawn_check(
                        t.clone(),
                        self.limit.clone(),
                        self.tx.clone(),
                        self.trackers.clone(),
                    );
                    self.started += 1;
                    self.tasks.insert(key, (t, task));
                }
            }
        }
        for (key, (_, task)) in old {
            task.abort();
            trackers.remove(&key);
        }
    }

    /// Current state of every tracked backend.
    pub fn states(&self) -> BTreeMap<(VipIdent, IpAddr), bool> {
        self.trackers
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, t)| (*k, t.up))
            .collect()
    }
}

/// The probe loop of one target: probes every interval (with jitter), feeds
/// its tracker, and sends a verdict on each transition.
fn spawn_check(
    t: Target,
    limit: Arc<Semaphore>,
    tx: mpsc::Sender<Verdict>,
    trackers: Trackers,
) -> JoinHandle<()> {
    let key = (t.vip, t.backend);
    tokio::spawn(async move {
        // Spread the first probes over one interval.
        tokio::time::sleep(t.check.interval.mul_f64(fastrand::f64())).await;
        loop {
            let result = {
                let _permit = limit.acquire().await;
                probe(&t).await
            };
            let transition = {
                let mut map = trackers.lock().expect("not poisoned");
                // Gone from the map: the checker stopped watching it.
                let Some(tr) = map.get_mut(&key) else { return };
                tr.observe(result.is_ok())
            };
            if let Some(up) = transition {
                let reason = match &result {
                    Ok(()) => format!("{} consecutive successful checks", t.check.rise),
                    Err(e) => format!("{} consecutive failed checks, last: {e}", t.check.fall),
                };
                if tx
                    .send(Verdict {
                        vip: t.vip,
                        backend: t.backend,
                        up,
                        reason,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let jitter = 1.0 + t.check.jitter * (2.0 * fastrand::f64() - 1.0);
            tokio::time::sleep(t.check.interval.mul_f64(jitter)).await;
        }
    })
}

/// Shortest interval of any check, to size the reconcile tick.
pub fn shortest_interval(c: &Config) -> Duration {
    c.vips
        .iter()
        .map(|v| v.health_check.interval)
        .min()
        .unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut t = Tracker::new(true, 2, 3);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a success resets the failure count");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None, "no repeated transition");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn dns_wire_format() {
        let q = dns_query(0xabcd, "health.lb.");
        assert_eq!(&q[..12], &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x06health\x02lb\x00\x00\x01\x00\x01");
        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(dns_check(0xabcd, &r).is_ok());
        r[3] = 0x82;
        assert_eq!(dns_check(0xabcd, &r).unwrap_err(), "dns: SERVFAIL");
        assert!(dns_check(0x1111, &r).is_err());
        assert!(dns_check(0xabcd, &q).is_err(), "a query is not an answer");
    }

    fn target(port: u16, probe: Probe) -> Target {
        Target {
            vip: (
                "10.0.0.1".parse().unwrap(),
                80,
                crate::config::Protocol::Tcp,
            ),
            vip_name: "t".into(),
            backend: "127.0.0.1".parse().unwrap(),
            port,
            check: HealthCheck {
                probe,
                port: None,
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(500),
                rise: 1,
                fall: 1,
                jitter: 0.0,
                initially_up: true,
            },
        }
    }

    #[tokio::test]
    async fn probes_against_real_sockets_on_loopback() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let code = if req.starts_with("GET /ok ") {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        assert!(probe(&target(port, Probe::Tcp)).await.is_ok());
        let ok = Probe::Http {
            path: "/ok".into(),
            expect_status: 200,
            host: None,
        };
        assert!(probe(&target(port, ok)).await.is_ok());
        let bad = Probe::Http {
            path: "/down".into(),
            expect_status: 200,
            host: None,
        };
        let e = probe(&target(port, bad)).await.unwrap_err();
        assert!(e.contains("status 503, want 200"), "{e}");
        // A closed port fails fast with a reason.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = probe(&target(closed, Probe::Tcp)).await.unwrap_err();
        assert!(e.contains("tcp connect"), "{e}");

        // UDP echo and DNS on loopback.
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uport = udp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                let mut reply = buf[..n].to_vec();
                if n >= 12 {
                    reply[2] |= 0x80; // a DNS-ish answer: QR set, NOERROR
                }
                udp.send_to(&reply, from).await.unwrap();
            }
        });
        assert!(
            probe(&target(
                uport,
                Probe::Udp {
                    payload: "ping".into()
                }
            ))
            .await
            .is_ok()
        );
        assert!(
            probe(&target(
                uport,
                Probe::Dns {
                    query: "health.lb.".into()
                }
            ))
            .await
            .is_ok()
        );
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sport = silent.local_addr().unwrap().port();
        let e = probe(&target(
            sport,
            Probe::Udp {
                payload: "ping".into(),
            },
        ))
        .await
        .unwrap_err();
        assert!(e.contains("no answer"), "{e}");
    }

    #[tokio::test]
    async fn the_checker_reports_transitions_only() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let mut t = target(port, Probe::Tcp);
        t.check.initially_up = false;
        let (tx, mut rx) = mpsc::channel(8);
        let checker = Checker::start(vec![t.clone()], 4, tx, None);
        let v = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("verdict")
            .unwrap();
        assert!(v.up, "{v:?}");
        drop(tcp);
        let v = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("verdict")
            .unwrap();
        assert!(!v.up);
        assert!(v.reason.contains("failed checks"), "{}", v.reason);
        drop(checker);
    }

    #[tokio::test]
    async fn a_change_restarts_only_the_checks_it_changes() {
        let (tx, _rx) = mpsc::channel(8);
        let a = target(1, Probe::Tcp);
        let mut b = target(2, Probe::Tcp);
        b.backend = "10.0.0.2".parse().unwrap();
        let checker = Checker::start(vec![a.clone(), b.clone()], 4, tx.clone(), None);
        assert_eq!(checker.started, 2);
        // The same targets again (a reload that changed something else).
        let checker = Checker::start(vec![a.clone(), b.clone()], 4, tx.clone(), Some(checker));
        assert_eq!(checker.started, 2, "unchanged checks keep running");
        // One check's settings change, one backend goes.
        let mut a2 = a.clone();
        a2.check.interval = Duration::from_secs(7);
        let checker = Checker::start(vec![a2], 4, tx.clone(), Some(checker));
        assert_eq!(checker.started, 3);
        assert_eq!(
            checker.states().len(),
            1,
            "the gone backend's tracker went too"
        );
        // A new concurrency limit restarts everything.
        let checker = Checker::start(vec![a.clone()], 8, tx, Some(checker));
        assert_eq!(checker.started, 4);
    }
}
