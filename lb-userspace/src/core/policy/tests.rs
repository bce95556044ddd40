//! Every policy mode, including fail-over, fail-back with hysteresis,
//! spill-over, draining and panic.

use std::time::{Duration, Instant};

use super::*;
use crate::core::config::{self, Config};

fn cfg(yaml: &str) -> Config {
    config::parse(yaml, "test").unwrap_or_else(|e| panic!("{e}"))
}

/// `healthy[i]`: backend `i` is up; a down backend does not answer (it
/// crashed), as in most failures.
fn run(
    c: &Config,
    healthy: &[bool],
    st: &mut PolicyState,
    now: Instant,
) -> (Decision, Vec<PolicyEvent>) {
    let seen: Vec<Seen> = healthy
        .iter()
        .map(|up| Seen {
            up: *up,
            reachable: *up,
        })
        .collect();
    run_seen(c, &seen, st, now)
}

fn run_seen(
    c: &Config,
    seen: &[Seen],
    st: &mut PolicyState,
    now: Instant,
) -> (Decision, Vec<PolicyEvent>) {
    let mut ev = vec![];
    let d = decide(&c.vips[0], &c.node, seen, st, now, &mut ev);
    (d, ev)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

const LOCAL_FIRST: &str = r#"
node: {cloud: aws, region: eu-west-1, zone: a}
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: local-first, overprovisioning: 1.4}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.2, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.3, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.4, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.1.1.1, labels: {cloud: gcp, region: europe-west1}}
      - {address: 10.2.1.1, labels: {cloud: azure, region: westeurope}, weight: 300}
"#;

#[test]
fn local_first_keeps_everything_local_while_healthy() {
    let c = cfg(LOCAL_FIRST);
    let mut st = PolicyState::default();
    let (d, ev) = run(&c, &[true; 6], &mut st, Instant::now());
    assert_eq!(d.local_share, Some(1.0));
    assert!(d.shares[..4].iter().all(|s| approx(*s, 0.25)));
    assert_eq!(&d.weights[4..], &[0, 0]);
    assert!(ev.is_empty());
}

#[test]
fn local_first_spills_in_proportion_to_missing_capacity() {
    let c = cfg(LOCAL_FIRST);
    let mut st = PolicyState::default();
    let now = Instant::now();
    // 3 of 4 local up: 0.75 × 1.4 ≥ 1, still all local.
    let (d, ev) = run(&c, &[true, true, true, false, true, true], &mut st, now);
    assert_eq!(d.local_share, Some(1.0));
    assert!(ev.is_empty());
    // 2 of 4: 0.5 × 1.4 = 0.7 stays local, 0.3 spills by remote weight 100:300.
    let (d, ev) = run(&c, &[true, true, false, false, true, true], &mut st, now);
    assert!(approx(d.local_share.unwrap(), 0.7));
    assert!(approx(d.shares[0], 0.35) && approx(d.shares[1], 0.35));
    assert!(approx(d.shares[4], 0.075) && approx(d.shares[5], 0.225));
    assert!(approx(d.shares.iter().sum::<f64>(), 1.0));
    assert_eq!(ev[0].kind, EventKind::SpilloverStart);
    assert_eq!(d.down, vec![false, false, true, true, false, false]);
    // Whole local cloud down: fail over.
    let (d, ev) = run(&c, &[false, false, false, false, true, true], &mut st, now);
    assert_eq!(d.local_share, Some(0.0));
    assert!(approx(d.shares[4], 0.25) && approx(d.shares[5], 0.75));
    assert_eq!(ev[0].kind, EventKind::Failover);
    // Back: fail back, all local again.
    let (d, ev) = run(&c, &[true; 6], &mut st, now);
    assert_eq!(d.local_share, Some(1.0));
    assert_eq!(ev[0].kind, EventKind::Failback);
}

#[test]
fn local_first_without_remote_capacity_stays_local() {
    let c = cfg(LOCAL_FIRST);
    let mut st = PolicyState::default();
    let (d, _) = run(
        &c,
        &[true, true, false, false, false, false],
        &mut st,
        Instant::now(),
    );
    assert_eq!(d.local_share, Some(1.0));
    assert!(approx(d.shares[0], 0.5));
}

#[test]
fn locality_level_matters() {
    let c = cfg(&LOCAL_FIRST.replace("overprovisioning: 1.4", "locality: cloud"));
    let mut st = PolicyState::default();
    let (d, _) = run(&c, &[true; 6], &mut st, Instant::now());
    assert_eq!(d.local_share, Some(1.0));
}

#[test]
fn active_active_splits_by_cloud_weight() {
    let c = cfg(r#"
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: active-active, cloud_weights: {aws: 70, gcp: 30}, overprovisioning: 1.0}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws}}
      - {address: 10.0.1.2, labels: {cloud: aws}}
      - {address: 10.1.1.1, labels: {cloud: gcp}}
      - {address: 10.9.1.1, labels: {cloud: other}}
"#);
    let mut st = PolicyState::default();
    let (d, _) = run(&c, &[true; 4], &mut st, Instant::now());
    assert!(approx(d.shares[0], 0.35) && approx(d.shares[1], 0.35) && approx(d.shares[2], 0.3));
    assert_eq!(d.weights[3], 0, "a cloud without a weight gets nothing");
    // Half of aws down, overprovisioning 1: aws share halves before normalising.
    let (d, _) = run(&c, &[true, false, true, true], &mut st, Instant::now());
    assert!(approx(d.shares[0], 35.0 / 65.0) && approx(d.shares[2], 30.0 / 65.0));
    // All of gcp down: aws takes everything.
    let (d, _) = run(&c, &[true, true, false, true], &mut st, Instant::now());
    assert!(approx(d.shares[0], 0.5));
}

const ACTIVE_PASSIVE: &str = r#"
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: active-passive, tiers: [{cloud: aws}, {cloud: gcp}, {cloud: azure}], min_healthy: 0.5, failback_after: 30s}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws}}
      - {address: 10.0.1.2, labels: {cloud: aws}}
      - {address: 10.1.1.1, labels: {cloud: gcp}}
      - {address: 10.2.1.1, labels: {cloud: azure}}
"#;

#[test]
fn active_passive_fails_over_at_once_and_back_after_hysteresis() {
    let c = cfg(ACTIVE_PASSIVE);
    let mut st = PolicyState::default();
    let t0 = Instant::now();
    let (d, ev) = run(&c, &[true; 4], &mut st, t0);
    assert_eq!(d.active_tier, Some(0));
    assert_eq!(ev[0].kind, EventKind::TierSwitch);
    assert_eq!(&d.weights[2..], &[0, 0]);
    // One of two aws up = 50%: still enough (min_healthy 0.5).
    let (d, _) = run(&c, &[true, false, true, true], &mut st, t0);
    assert_eq!(d.active_tier, Some(0));
    assert!(approx(d.shares[0], 1.0));
    // Both aws down: immediate fail-over to gcp.
    let t1 = t0 + Duration::from_secs(1);
    let (d, ev) = run(&c, &[false, false, true, true], &mut st, t1);
    assert_eq!(d.active_tier, Some(1));
    assert_eq!(ev[0].kind, EventKind::Failover);
    assert!(approx(d.shares[2], 1.0));
    // aws comes back: not yet (hysteresis), then flaps, then holds.
    let t2 = t1 + Duration::from_secs(1);
    let (d, ev) = run(&c, &[true, true, true, true], &mut st, t2);
    assert_eq!(d.active_tier, Some(1));
    assert!(ev.is_empty());
    let (d, _) = run(&c, &[false, false, true, true], &mut st, t2 + secs(20));
    assert_eq!(d.active_tier, Some(1), "a flap resets the clock");
    let t3 = t2 + Duration::from_secs(21);
    run(&c, &[true, true, true, true], &mut st, t3);
    let (d, _) = run(&c, &[true, true, true, true], &mut st, t3 + secs(29));
    assert_eq!(d.active_tier, Some(1));
    let (d, ev) = run(&c, &[true, true, true, true], &mut st, t3 + secs(30));
    assert_eq!(d.active_tier, Some(0));
    assert_eq!(ev[0].kind, EventKind::Failback);
    // gcp and aws down: azure.
    let (d, _) = run(&c, &[false, false, false, true], &mut st, t3 + secs(31));
    assert_eq!(d.active_tier, Some(2));
    // Nothing healthy at all: no tier; panic, the last resort, spreads
    // over every tier (with panic off, the table empties).
    let (d, _) = run(&c, &[false; 4], &mut st, t3 + secs(32));
    assert_eq!(d.active_tier, None);
    assert!(d.panic && d.weights.iter().all(|w| *w > 0));
    let off = ACTIVE_PASSIVE.replace("min_healthy: 0.5", "min_healthy: 0.5, panic_threshold: 0");
    let (d, _) = run(&cfg(&off), &[false; 4], &mut PolicyState::default(), t3);
    assert!(!d.panic && d.weights.iter().all(|w| *w == 0));
}

#[test]
fn draining_and_maintenance() {
    let c = cfg(r#"
vips:
  - address: 10.100.0.1
    port: 80
    backends:
      - {address: 10.0.1.1}
      - {address: 10.0.1.2, state: draining}
      - {address: 10.0.1.3, state: maintenance}
"#);
    let mut st = PolicyState::default();
    let (d, _) = run(&c, &[true; 3], &mut st, Instant::now());
    assert_eq!(d.weights[1], 0, "draining: no new flows");
    assert!(!d.down[1], "draining: established flows stay");
    assert_eq!(d.weights[2], 0);
    assert!(d.down[2], "maintenance: out now");
    assert!(approx(d.shares[0], 1.0));
}

/// A cloud holding most of the weight is lost: with the default
/// threshold, the other listed cloud takes everything; the dead backends,
/// the unlisted cloud and panic stay out of it.
#[test]
fn losing_the_bigger_cloud_fails_over_without_panic() {
    let c = cfg(r#"
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: active-active, cloud_weights: {aws: 70, gcp: 30}}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws}}
      - {address: 10.0.1.2, labels: {cloud: aws}}
      - {address: 10.0.1.3, labels: {cloud: aws}}
      - {address: 10.1.1.1, labels: {cloud: gcp}}
      - {address: 10.9.1.1, labels: {cloud: other}}
"#);
    assert_eq!(c.vips[0].policy.panic_threshold, 0.5, "the default");
    let mut st = PolicyState::default();
    let (d, ev) = run(
        &c,
        &[false, false, false, true, true],
        &mut st,
        Instant::now(),
    );
    assert!(!d.panic, "{ev:?}");
    assert!(
        approx(d.shares[3], 1.0),
        "gcp takes everything: {:?}",
        d.shares
    );
    assert_eq!(&d.weights[..3], &[0, 0, 0]);
    assert_eq!(d.weights[4], 0, "an unlisted cloud gets nothing");
    // The same with local-first, where the local cloud holds most weight.
    let lf = cfg(&LOCAL_FIRST.replace("weight: 300", "weight: 100"));
    let (d, _) = run(
        &lf,
        &[false, false, false, false, true, true],
        &mut st,
        Instant::now(),
    );
    assert!(!d.panic && approx(d.shares[4] + d.shares[5], 1.0));
}

/// Blue/green: the bigger blue tier stops for the cutover; green, healthy,
/// takes over without panic spreading traffic over the stopped blue.
#[test]
fn a_blue_green_cutover_moves_to_the_next_tier() {
    let c = cfg(r#"
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: active-passive, tiers: [{zone: blue}, {zone: green}]}
    backends:
      - {address: 10.0.1.1, labels: {zone: blue}}
      - {address: 10.0.1.2, labels: {zone: blue}}
      - {address: 10.0.1.3, labels: {zone: blue}}
      - {address: 10.0.1.4, labels: {zone: blue}}
      - {address: 10.0.1.5, labels: {zone: blue}}
      - {address: 10.0.2.1, labels: {zone: green}}
      - {address: 10.0.2.2, labels: {zone: green}}
      - {address: 10.0.2.3, labels: {zone: green}}
"#);
    let mut st = PolicyState::default();
    let mut healthy = [true; 8];
    run(&c, &healthy, &mut st, Instant::now());
    healthy[..5].fill(false);
    let (d, _) = run(&c, &healthy, &mut st, Instant::now());
    assert_eq!(d.active_tier, Some(1));
    assert!(!d.panic);
    assert!(d.shares[5..].iter().all(|s| approx(*s, 1.0 / 3.0)));
    assert!(d.weights[..5].iter().all(|w| *w == 0));
}

/// Panic only when no failure domain has healthy capacity left, and then
/// never onto a backend that is down and does not answer while another is
/// healthy.
#[test]
fn panic_is_a_last_resort() {
    let c = cfg(THREE_LOCAL);
    let mut st = PolicyState::default();
    let now = Instant::now();
    let dead = Seen {
        up: false,
        reachable: false,
    };
    let failing_checks = Seen {
        up: false,
        reachable: true,
    };
    // 1 of 3 healthy (< 50%), and no other domain: panic — but the two
    // that do not answer stay out.
    let (d, ev) = run_seen(&c, &[Seen::UP, dead, dead], &mut st, now);
    assert!(d.panic);
    assert_eq!(ev[0].kind, EventKind::PanicEnter);
    assert_eq!(&d.weights[1..], &[0, 0]);
    assert!(approx(d.shares[0], 1.0));
    assert_eq!(d.down, vec![false, true, true]);
    // Down but answering (health endpoint failing): spread over them too,
    // and their flows are not moved.
    let (d, _) = run_seen(&c, &[Seen::UP, failing_checks, dead], &mut st, now);
    assert!(d.panic && approx(d.shares[0], 0.5) && approx(d.shares[1], 0.5));
    assert_eq!(d.weights[2], 0);
    assert_eq!(d.down, vec![false, false, true]);
    // Nothing healthy at all: every backend, the health checks may be what
    // is wrong.
    let (d, _) = run_seen(&c, &[dead, dead, dead], &mut st, now);
    assert!(d.panic && d.weights.iter().all(|w| *w > 0));
    // 2 of 3 healthy: no panic.
    let (d, ev) = run_seen(&c, &[Seen::UP, Seen::UP, dead], &mut st, now);
    assert!(!d.panic);
    assert_eq!(ev[0].kind, EventKind::PanicExit);
    // A remote domain with capacity: fail over, no panic.
    let two = cfg(&format!(
        "{THREE_LOCAL}      - {{address: 10.1.1.1, labels: {{cloud: gcp}}}}\n"
    ));
    let mut st = PolicyState::default();
    let (d, _) = run_seen(&two, &[Seen::UP, dead, dead, Seen::UP], &mut st, now);
    assert!(!d.panic);
}

/// Three local backends and nothing else.
const THREE_LOCAL: &str = r#"
node: {cloud: aws}
vips:
  - address: 10.100.0.1
    port: 80
    policy: {mode: local-first, locality: cloud}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws}}
      - {address: 10.0.1.2, labels: {cloud: aws}}
      - {address: 10.0.1.3, labels: {cloud: aws}}
"#;

#[test]
fn drain_timeout() {
    let t = Instant::now();
    assert!(!drain_expired(
        t,
        t + Duration::from_secs(1),
        Duration::from_secs(2)
    ));
    assert!(drain_expired(
        t,
        t + Duration::from_secs(2),
        Duration::from_secs(2)
    ));
}
