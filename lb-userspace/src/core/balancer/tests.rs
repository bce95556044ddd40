//! The facade over in-memory tables: allocation, minimal ring writes,
//! restart adoption, health and drain handling, config changes.

use std::time::{Duration, Instant};

use super::*;
use crate::core::{
    config::{self, FlowsOnDown, HashMode, Protocol},
    tables::MemoryTables,
};

const CFG: &str = r#"
node: {name: edge-1, cloud: aws, region: eu-west-1}
limits: {max_vips: 8, max_backends: 64, ring_size: 1021}
vips:
  - name: orders
    address: 10.100.0.1
    port: 443
    policy: {drain_timeout: 60s}
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.2, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.0.1.3, labels: {cloud: aws, region: eu-west-1}}
  - name: dns
    address: 10.100.0.2
    port: 53
    protocol: udp
    flows_on_backend_down: move
    backends:
      - {address: 10.0.2.1}
"#;

fn cfg(text: &str) -> Config {
    config::parse(text, "test").unwrap_or_else(|e| panic!("{e}"))
}

fn tables(c: &Config) -> MemoryTables {
    MemoryTables::new(c.limits)
}

/// Every VIP's id and its backends' ids.
fn ids_of(b: &Balancer<MemoryTables>) -> Vec<(u32, Vec<u32>)> {
    let vips = b.state().vips;
    vips.iter()
        .map(|v| (v.id, v.backends.iter().map(|b| b.id).collect()))
        .collect()
}

fn orders() -> VipIdent {
    ("10.100.0.1".parse().unwrap(), 443, Protocol::Tcp)
}

#[test]
fn provisions_vips_backends_markers_and_tables() {
    let c = cfg(CFG);
    let b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let t = b.tables();
    assert!(t.settings.is_some(), "the runtime knobs are written");
    // Two services and two address markers.
    assert_eq!((t.vips.len(), t.markers.len()), (2, 2));
    let dns = t
        .vips
        .values()
        .find(|m| m.flows_on_down == FlowsOnDown::Move)
        .expect("move flag on dns");
    assert_eq!(dns.hash, HashMode::FiveTuple);
    let id = b.vip_id(&orders()).unwrap();
    let ring = t.live_ring(id);
    let counts = maglev::counts(&ring);
    assert_eq!(counts.len(), 3, "three backends share the ring");
    for (bid, n) in counts {
        let be = t.backends[bid as usize].expect("a valid slot");
        assert_eq!(be.vip_id, id);
        assert!((n as f64 / 1021.0 - 1.0 / 3.0).abs() < 0.01);
    }
    let s = b.state();
    assert_eq!(s.vips.len(), 2);
    let address = |id: u32| t.backends[id as usize].map(|b| b.address);
    assert_eq!(s.vips[0].digest, maglev::digest(&ring, address));
}

#[test]
fn a_restart_adopts_everything_and_writes_nothing() {
    let c = cfg(CFG);
    let first = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let before = first.tables().clone();
    let ids = ids_of(&first);
    // A new agent finds the same tables (pinned maps) and the same config.
    let mut kernel = before.clone();
    kernel.slot_writes = 0;
    kernel.flips = 0;
    let second = Balancer::new(kernel, c, Instant::now()).unwrap();
    let again = ids_of(&second);
    assert_eq!(
        ids, again,
        "ids kept: the connection table still points at the right backends"
    );
    assert_eq!(second.tables().slot_writes, 0, "no ring slot rewritten");
    assert_eq!(second.tables().flips, 0);
    assert_eq!(second.tables().rings, before.rings);
    assert_eq!(second.tables().backends, before.backends);
    assert_eq!(second.work.backend_writes, 0);
}

#[test]
fn restart_with_a_changed_config_cleans_up_what_left() {
    let c = cfg(CFG);
    let first = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let kernel = first.tables().clone();
    let dns_backend = first
        .backend_id(
            &("10.100.0.2".parse().unwrap(), 53, Protocol::Udp),
            "10.0.2.1".parse().unwrap(),
        )
        .unwrap();
    let smaller = cfg(&CFG[..CFG.find("  - name: dns").unwrap()]);
    let second = Balancer::new(kernel, smaller, Instant::now()).unwrap();
    let t = second.tables();
    assert_eq!(
        (t.vips.len(), t.markers.len()),
        (1, 1),
        "orders and its marker remain"
    );
    assert_eq!(
        t.backends[dns_backend as usize], None,
        "the dns backend slot is released"
    );
}

#[test]
fn only_changed_slots_are_written_to_the_inactive_half() {
    let c = cfg(CFG);
    let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let id = b.vip_id(&orders()).unwrap();
    let victim: IpAddr = "10.0.1.3".parse().unwrap();
    let live_before = b.tables().live_ring(id);
    let half_before = b.tables().ring_select[id as usize];
    let spare_before = b.tables().read_ring(id, half_before ^ 1).unwrap();
    let writes = b.tables().slot_writes;
    assert!(b.set_health(&orders(), victim, Health::unreachable("connect refused")));
    b.reconcile(Instant::now()).unwrap();
    let after = b.tables().live_ring(id);
    assert_ne!(b.tables().ring_select[id as usize], half_before, "flipped");
    assert!(!after.contains(&b.backend_id(&orders(), victim).unwrap()));
    assert_eq!(
        b.tables().slot_writes - writes,
        maglev::changed_slots(&spare_before, &after).len()
    );
    // And back: the spare half now holds the original table, so only the
    // slots that moved are written.
    let writes = b.tables().slot_writes;
    assert!(b.set_health(&orders(), victim, Health::up("ok")));
    b.reconcile(Instant::now()).unwrap();
    assert_eq!(b.tables().live_ring(id), live_before);
    assert_eq!(
        b.tables().slot_writes - writes,
        0,
        "the spare half already held exactly this table"
    );
    let kinds: Vec<_> = b.events.recent().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::BackendDown) && kinds.contains(&EventKind::BackendUp));
    assert!(
        !b.tables().backends[b.backend_id(&orders(), victim).unwrap() as usize]
            .unwrap()
            .down
    );
}

#[test]
fn a_health_failure_moves_only_the_failed_backends_slots() {
    let c = cfg(CFG);
    let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let id = b.vip_id(&orders()).unwrap();
    let victim: IpAddr = "10.0.1.2".parse().unwrap();
    let victim_id = b.backend_id(&orders(), victim).unwrap();
    let before = b.tables().live_ring(id);
    assert!(b.set_health(&orders(), victim, Health::unreachable("connect refused")));
    b.reconcile(Instant::now()).unwrap();
    let after = b.tables().live_ring(id);
    let moved = maglev::changed_slots(&before, &after);
    assert_eq!(
        moved.len(),
        before.iter().filter(|s| **s == victim_id).count(),
        "exactly the failed backend's slots move"
    );
    assert!(moved.iter().all(|(s, _)| before[*s as usize] == victim_id));
}

/// After adoption the spare half is unknown: the first change writes it
/// whole, later ones only their differences.
#[test]
fn after_adoption_the_first_change_writes_the_whole_spare_half() {
    let c = cfg(CFG);
    let first = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let mut b = Balancer::new(first.tables().clone(), c, Instant::now()).unwrap();
    let w = b.tables().slot_writes;
    b.set_health(
        &orders(),
        "10.0.1.1".parse().unwrap(),
        Health::unreachable("timeout"),
    );
    b.reconcile(Instant::now()).unwrap();
    assert_eq!(b.tables().slot_writes - w, 1021);
    let w = b.tables().slot_writes;
    b.set_health(
        &orders(),
        "10.0.1.2".parse().unwrap(),
        Health::unreachable("timeout"),
    );
    b.reconcile(Instant::now()).unwrap();
    assert!(b.tables().slot_writes - w < 1021);
}

#[test]
fn unchanged_reconcile_writes_nothing() {
    let c = cfg(CFG);
    let mut b = Balancer::new(tables(&c), c, Instant::now()).unwrap();
    let (w, f) = (b.tables().slot_writes, b.tables().flips);
    b.reconcile(Instant::now()).unwrap();
    assert_eq!((b.tables().slot_writes, b.tables().flips), (w, f));
}

#[test]
fn the_periodic_reconcile_rewrites_no_vip_entry_or_marker() {
    let c = cfg(CFG);
    let mut b = Balancer::new(tables(&c), c, Instant::now()).unwrap();
    let written = b.tables().vip_writes;
    b.reconcile(Instant::now()).unwrap();
    b.reconcile(Instant::now()).unwrap();
    assert_eq!(b.tables().vip_writes, written);
}

#[test]
fn draining_keeps_flows_until_the_timeout_then_releases_the_slot() {
    let c = cfg(CFG);
    let t0 = Instant::now();
    let mut b = Balancer::new(tables(&c), c.clone(), t0).unwrap();
    let victim: IpAddr = "10.0.1.2".parse().unwrap();
    let id = b.backend_id(&orders(), victim).unwrap();
    let drained = cfg(&CFG.replace(
        "{address: 10.0.1.2,",
        "{address: 10.0.1.2, state: draining,",
    ));
    b.apply(drained, t0).unwrap();
    let vip_id = b.vip_id(&orders()).unwrap();
    assert!(!b.tables().live_ring(vip_id).contains(&id), "no new flows");
    let valid_and_up =
        |b: &Balancer<MemoryTables>| b.tables().backends[id as usize].is_some_and(|s| !s.down);
    assert!(valid_and_up(&b), "slot valid and not down: flows stay");
    b.reconcile(t0 + Duration::from_secs(59)).unwrap();
    assert!(valid_and_up(&b));
    b.reconcile(t0 + Duration::from_secs(60)).unwrap();
    assert_eq!(
        b.tables().backends[id as usize],
        None,
        "released: the data path re-steers its flows"
    );
    let kinds: Vec<_> = b.events.recent().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::DrainStart) && kinds.contains(&EventKind::DrainTimeout));
    // Undrain: valid again.
    b.apply(c, t0 + Duration::from_secs(61)).unwrap();
    assert!(valid_and_up(&b));
}

#[test]
fn config_changes_add_and_remove_vips_and_backends() {
    let c = cfg(CFG);
    let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let gone: IpAddr = "10.0.1.1".parse().unwrap();
    let gone_id = b.backend_id(&orders(), gone).unwrap();
    let changed = cfg(&CFG
        .replace("      - {address: 10.0.1.1, labels: {cloud: aws, region: eu-west-1}}\n", "")
        .replace("  - name: dns", "  - name: api\n    address: 10.100.0.3\n    port: 80\n    backends: [{address: 10.0.3.1}]\n  - name: dns"));
    b.apply(changed, Instant::now()).unwrap();
    assert_eq!(
        b.tables().backends[gone_id as usize],
        None,
        "removed backend released"
    );
    assert_eq!(b.state().vips.len(), 3);
    assert_eq!((b.tables().vips.len(), b.tables().markers.len()), (3, 3));
    // Removing the VIP removes its keys and marker.
    b.apply(
        cfg(&CFG[..CFG.find("  - name: dns").unwrap()]),
        Instant::now(),
    )
    .unwrap();
    assert_eq!((b.tables().vips.len(), b.tables().markers.len()), (1, 1));
    // Limits cannot change while running.
    let e = b
        .apply(
            cfg(&CFG.replace("max_vips: 8", "max_vips: 9")),
            Instant::now(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("limits changed"), "{e}");
}

#[test]
fn two_agents_with_the_same_inputs_build_identical_tables() {
    let c = cfg(CFG);
    let a = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let b = Balancer::new(tables(&c), c, Instant::now()).unwrap();
    let da: Vec<_> = a.state().vips.iter().map(|v| v.digest.clone()).collect();
    let db: Vec<_> = b.state().vips.iter().map(|v| v.digest.clone()).collect();
    assert_eq!(da, db);
}

/// The fleet compares digests: two hosts steering alike agree even when
/// their backend ids differ (one of them had other VIPs before).
#[test]
fn digests_agree_across_different_id_histories() {
    let c = cfg(CFG);
    let a = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let mut b = Balancer::new(
        tables(&c),
        cfg(&CFG.replace("10.0.1.1", "10.0.7.1")),
        Instant::now(),
    )
    .unwrap();
    b.apply(c, Instant::now()).unwrap();
    let ids = |x: &Balancer<MemoryTables>| x.backend_id(&orders(), "10.0.1.1".parse().unwrap());
    assert_ne!(ids(&a), ids(&b), "different ids for the same backend");
    let digests = |x: &Balancer<MemoryTables>| {
        x.state()
            .vips
            .iter()
            .map(|v| v.digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&a), digests(&b));
}

#[test]
fn no_packet_ever_sees_a_table_pointing_at_a_cleared_backend() {
    let c = cfg(CFG);
    let mut t = tables(&c);
    t.audit = true;
    let mut b = Balancer::new(t, c, Instant::now()).unwrap();
    // Every backend of orders replaced at once, then the VIP removed.
    let swapped = CFG
        .replace("10.0.1.1", "10.0.9.1")
        .replace("10.0.1.2", "10.0.9.2")
        .replace("10.0.1.3", "10.0.9.3");
    b.apply(cfg(&swapped), Instant::now()).unwrap();
    b.apply(cfg(CFG), Instant::now()).unwrap();
    b.apply(
        cfg(&CFG[..CFG.find("  - name: dns").unwrap()]),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(b.tables().dangling_seen, 0);
    assert_eq!(b.tables().dangling_slots(), 0);
    // An agent restarting with the backends swapped.
    let kernel = b.tables().clone();
    let restarted = Balancer::new(kernel, cfg(&swapped), Instant::now()).unwrap();
    assert_eq!(restarted.tables().dangling_seen, 0);
    assert_eq!(restarted.tables().dangling_slots(), 0);
}

#[test]
fn a_full_swap_at_the_backend_limit_reuses_the_leaving_ids() {
    let text = CFG.replace("max_backends: 64", "max_backends: 4");
    let c = cfg(&text);
    let mut b = Balancer::new(tables(&c), c, Instant::now()).unwrap();
    let swapped = text
        .replace("10.0.1.1", "10.0.9.1")
        .replace("10.0.1.2", "10.0.9.2")
        .replace("10.0.1.3", "10.0.9.3");
    b.apply(cfg(&swapped), Instant::now()).unwrap();
    let ids: BTreeSet<u32> = ["10.0.9.1", "10.0.9.2", "10.0.9.3"]
        .iter()
        .map(|a| b.backend_id(&orders(), a.parse().unwrap()).unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(b.tables().backends().unwrap().len(), 4, "3 new + dns");
    assert_eq!(b.tables().dangling_slots(), 0);
}

/// The change `failing_writes` tests apply: a backend leaves, a VIP comes.
fn changed_config() -> Config {
    cfg(&CFG
        .replace("      - {address: 10.0.1.1, labels: {cloud: aws, region: eu-west-1}}\n", "")
        .replace("  - name: dns", "  - name: api\n    address: 10.100.0.3\n    port: 80\n    backends: [{address: 10.0.3.1}]\n  - name: dns"))
}

/// Every VIP's name and digest: what packets see, whatever the ids.
fn steering(b: &Balancer<MemoryTables>) -> Vec<(String, String)> {
    b.state()
        .vips
        .into_iter()
        .map(|v| (v.name, v.digest))
        .collect()
}

/// The facade describes the tables: an agent adopting them with the same
/// configuration writes nothing and sees the same ids and tables.
fn assert_agrees(b: &Balancer<MemoryTables>, c: &Config, clean: &[(String, String)]) {
    assert!(b.in_sync());
    assert_eq!(b.config(), c, "the running configuration is kept");
    assert_eq!(
        steering(b),
        clean,
        "steering is the running configuration's"
    );
    let mut kernel = b.tables().clone();
    assert_eq!(kernel.dangling_slots(), 0);
    (kernel.slot_writes, kernel.flips, kernel.vip_writes) = (0, 0, 0);
    let adopted = Balancer::new(kernel, c.clone(), Instant::now()).unwrap();
    assert_eq!(
        ids_of(&adopted),
        ids_of(b),
        "the shadows hold the maps' ids"
    );
    let t = adopted.tables();
    assert_eq!((t.slot_writes, t.flips, t.vip_writes), (0, 0, 0));
    assert_eq!(adopted.work.backend_writes, 0);
}

#[test]
fn a_write_failing_part_way_is_undone_by_reading_the_tables_back() {
    let c = cfg(CFG);
    let clean = steering(&Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap());
    let target = changed_config();
    let wanted = steering(&Balancer::new(tables(&target), target.clone(), Instant::now()).unwrap());
    // Fail the first, second, … write of the change until it goes through.
    let mut k = 0;
    loop {
        let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
        (b.tables_mut().writes_left, b.tables_mut().failures) = (Some(k), 1);
        match b.apply(target.clone(), Instant::now()) {
            Ok(()) => break,
            Err(e) => {
                assert!(e.to_string().contains("injected write failure"), "{e}");
                assert_agrees(&b, &c, &clean);
                assert_eq!(b.work.resyncs, 1);
                assert!(
                    b.events
                        .recent()
                        .any(|e| e.kind == EventKind::TablesResynced)
                );
                // Nothing is stuck: the same change goes through next time.
                b.apply(target.clone(), Instant::now()).unwrap();
                assert_eq!(steering(&b), wanted, "after {k} good writes");
            }
        }
        k += 1;
    }
    assert!(
        k > 5,
        "the change took {k} writes; every prefix of it was failed"
    );
}

#[test]
fn a_recovery_that_fails_too_is_retried_before_anything_else_is_written() {
    let c = cfg(CFG);
    let clean = steering(&Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap());
    let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    // The map stays broken after three writes of the change.
    (b.tables_mut().writes_left, b.tables_mut().failures) = (Some(3), usize::MAX);
    let e = b.apply(changed_config(), Instant::now()).unwrap_err();
    assert!(e.to_string().contains("re-applying failed too"), "{e}");
    assert!(!b.in_sync());
    assert!(b.reconcile(Instant::now()).is_err(), "still broken");
    let e = b.apply(changed_config(), Instant::now()).unwrap_err();
    assert!(e.to_string().contains("nothing applied"), "{e}");
    // The map heals: the next reconcile re-reads and re-applies.
    b.tables_mut().writes_left = None;
    b.reconcile(Instant::now()).unwrap();
    assert_agrees(&b, &c, &clean);
}

/// A changed access list goes in as the other generation before the
/// guard flips to it; the old generation is removed after; a restart with
/// the same lists rewrites none of them.
#[test]
fn access_lists_change_by_generation_and_survive_adoption() {
    let with = |allow: &str, deny: &str| {
        cfg(&CFG.replace(
            "    policy: {drain_timeout: 60s}",
            &format!("    policy: {{drain_timeout: 60s}}\n    allow: [{allow}]\n    deny: [{deny}]\n    rate_limit: {{source_packets_per_sec: 100}}"),
        ))
    };
    let c = with("10.0.0.0/8", "10.66.0.0/16");
    let mut b = Balancer::new(tables(&c), c.clone(), Instant::now()).unwrap();
    let id = b.vip_id(&orders()).unwrap();
    let live = |b: &Balancer<MemoryTables>| {
        let g = b.tables().guards[&id].acl_gen;
        let mut l = b.tables().acl(id, g).unwrap();
        l.sort();
        (g, l, b.tables().acls.len())
    };
    let (g0, l0, n0) = live(&b);
    assert_eq!(l0.len(), 2);
    assert_eq!(n0, 2, "one generation only once written");
    assert!(b.tables().vips[&orders()].guarded);
    let c2 = with("10.0.0.0/8, 192.0.2.0/24", "10.66.0.0/16");
    b.apply(c2.clone(), Instant::now()).unwrap();
    let (g1, l1, n1) = live(&b);
    assert_eq!(
        (g1, l1.len(), n1),
        (g0 ^ 1, 3, 3),
        "flipped, old generation gone"
    );
    // Adopted with the same configuration: no list rewritten.
    let kernel = b.tables().clone();
    let before = kernel.acls.clone();
    let again = Balancer::new(kernel, c2, Instant::now()).unwrap();
    assert_eq!(again.tables().acls, before);
    // An open VIP again: no guard flag, no entries.
    b.apply(c.clone(), Instant::now()).unwrap();
    b.apply(cfg(CFG), Instant::now()).unwrap();
    assert!(!b.tables().vips[&orders()].guarded);
    assert!(b.tables().acls.is_empty());
}
