//! The rise/fall state machine, the probes against real sockets on
//! loopback, and what a configuration change restarts.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
            crate::core::config::Protocol::Tcp,
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
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
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
    let f = probe(&target(port, bad)).await.unwrap_err();
    assert!(f.reason.contains("status 503, want 200"), "{f:?}");
    assert!(
        f.reachable,
        "an HTTP 503 is an answer: reachable, if unhealthy"
    );
    // A closed port fails fast with a reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = probe(&target(closed, Probe::Tcp)).await.unwrap_err();
    assert!(f.reason.contains("tcp connect"), "{f:?}");
    assert!(!f.reachable, "a refused connection is no answer");

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
    let udp_probe = Probe::Udp {
        payload: "ping".into(),
    };
    assert!(probe(&target(uport, udp_probe)).await.is_ok());
    let dns_probe = Probe::Dns {
        query: "health.lb.".into(),
    };
    assert!(probe(&target(uport, dns_probe)).await.is_ok());
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
    assert!(e.reason.contains("no answer"), "{e:?}");
    assert!(!e.reachable, "a silent UDP port never answered");
}

#[tokio::test]
async fn the_checker_reports_transitions_only() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut t = target(port, Probe::Tcp);
    t.check.initially_up = false;
    let (tx, mut rx) = mpsc::channel(8);
    let checker = Checker::start(vec![t.clone()], 4, tx, None, &BTreeMap::new());
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
    let checker = Checker::start(
        vec![a.clone(), b.clone()],
        4,
        tx.clone(),
        None,
        &BTreeMap::new(),
    );
    assert_eq!(checker.started, 2);
    // The same targets again (a reload that changed something else).
    let checker = Checker::start(
        vec![a.clone(), b.clone()],
        4,
        tx.clone(),
        Some(checker),
        &BTreeMap::new(),
    );
    assert_eq!(checker.started, 2, "unchanged checks keep running");
    // One check's settings change, one backend goes.
    let mut a2 = a.clone();
    a2.check.interval = Duration::from_secs(7);
    let checker = Checker::start(vec![a2], 4, tx.clone(), Some(checker), &BTreeMap::new());
    assert_eq!(checker.started, 3);
    assert_eq!(
        checker.states().len(),
        1,
        "the gone backend's tracker went too"
    );
    // A new concurrency limit restarts everything.
    let checker = Checker::start(vec![a.clone()], 8, tx, Some(checker), &BTreeMap::new());
    assert_eq!(checker.started, 4);
}
