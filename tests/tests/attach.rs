//! The embedded balancer object loads into the kernel and attaches in
//! driver mode to a veth inside a namespace this test creates and removes.

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{Xdp, XdpMode},
};
use lb_tests::netns::{Netns, require_root, veth};

#[test]
fn balancer_attaches_to_veth_in_driver_mode() -> Result<()> {
    require_root()?;
    let lb = Netns::new("attach-lb")?;
    let peer = Netns::new("attach-peer")?;
    veth(&lb, "lb0", &peer, "peer0")?;

    {
        let _in_ns = lb.enter()?;
        let mut ebpf = EbpfLoader::new()
            .load(lb::kernel::objects::BALANCER)
            .context("load object")?;
        let prog: &mut Xdp = ebpf
            .program_mut("lb_balancer")
            .context("no lb_balancer")?
            .try_into()?;
        prog.load().context("verifier rejected lb_balancer")?;
        prog.attach("lb0", XdpMode::Driver)
            .context("attach in driver mode")?;

        let link = lb.ip(&["-d", "link", "show", "lb0"])?;
        assert!(
            link.contains("xdp "),
            "driver-mode XDP not shown on lb0: {link}"
        );
        // Dropping `ebpf` detaches: the link is owned by this process.
    }
    let link = lb.ip(&["-d", "link", "show", "lb0"])?;
    assert!(
        !link.contains("prog/xdp"),
        "program still attached after drop: {link}"
    );
    Ok(())
}

/// Loads every program and prints what the verifier and JIT made of it
/// (the figures docs/ARCHITECTURE.md quotes). The kernel's limit is 1M
/// processed instructions; fail well before that. The balancer's body is
/// compiled twice (traffic, and explain probes that record nothing), so
/// the verifier walks its paths twice: 264k of the 1M when this was set.
#[test]
fn programs_fit_the_verifier_with_room_to_spare() -> Result<()> {
    require_root()?;
    let dp = lb::kernel::dataplane::Dataplane::load(lb::core::config::Limits::default(), None)?;
    let decap = lb::kernel::decap::Decap::load(false)?;
    let traced = lb::kernel::decap::Decap::load(true)?;
    for (name, info) in [
        ("lb_balancer", dp.program()?.info()?),
        ("lb_decap", decap.program()?.info()?),
        ("lb_decap --trace", traced.program()?.info()?),
    ] {
        let verified = info.verified_instruction_count().unwrap_or(0);
        println!(
            "{name}: {} xlated insns ({} B), {} B JIT code, {verified} instructions processed by the verifier",
            info.size_translated().unwrap_or(0) / 8,
            info.size_translated().unwrap_or(0),
            info.size_jitted(),
        );
        assert!(verified > 0, "{name}: verifier statistics unavailable");
        assert!(
            verified < 350_000,
            "{name}: {verified} verified instructions is too close to the 1M limit"
        );
    }
    Ok(())
}

/// Pinned maps created for one set of limits are refused, with a message
/// that says what differs and how to proceed, by a configuration with other
/// limits; the same limits adopt them.
#[test]
fn incompatible_pinned_state_is_refused_with_a_clear_message() -> Result<()> {
    require_root()?;
    let pins = PinDir::new("pins");
    let dir = pins.0.clone();
    let small = lb::core::config::Limits {
        max_vips: 4,
        max_backends: 16,
        ring_size: 251,
        conntrack_size: 4096,
        conntrack_per_cpu: false,
        ..lb::core::config::Limits::default()
    };
    {
        let mut dp = lb::kernel::dataplane::Dataplane::load(small, Some(&dir))?;
        use lb::core::tables::Tables as _;
        dp.set_backend(
            3,
            Some(&lb::core::tables::BackendEntry {
                vip_id: 1,
                address: "10.0.0.3".parse()?,
                forwarding: lb::core::config::Forwarding::Ipip,
                gue_port: None,
                mac: None,
                down: false,
            }),
        )?;
    }
    lb::kernel::pins::check_pinned(&dir, &small)?;
    let adopted = lb::kernel::dataplane::Dataplane::load(small, Some(&dir))?;
    use lb::core::tables::Tables as _;
    assert_eq!(
        adopted.backends()?.len(),
        1,
        "the pinned backend table was adopted, not recreated"
    );
    drop(adopted);
    let bigger = lb::core::config::Limits {
        ring_size: 257,
        ..small
    };
    let err = lb::kernel::pins::check_pinned(&dir, &bigger)
        .expect_err("different ring size must be refused");
    let text = err.to_string();
    assert!(
        text.contains("map RINGS") && text.contains("--reset-state"),
        "{text}"
    );
    Ok(())
}

/// The VIP address filter holds every address with a `VIPS` entry: set
/// before the entry is written, rebuilt when entries go, and rebuilt from
/// adopted entries at load (it is not pinned).
#[test]
fn the_vip_filter_follows_the_vip_table() -> Result<()> {
    use lb::core::{config::Protocol, tables::Tables as _};
    require_root()?;
    let pins = PinDir::new("filter");
    let dir = pins.0.clone();
    let limits = small_limits();
    let words = |a: std::net::IpAddr| lb::kernel::codec::addr_words(a);
    let v4: std::net::IpAddr = "10.100.0.1".parse()?;
    let v6: std::net::IpAddr = "fd20::1".parse()?;
    let other: std::net::IpAddr = "10.100.0.2".parse()?;
    let entry = lb::core::tables::VipEntry {
        id: 1,
        hash: lb::core::config::HashMode::FiveTuple,
        flows_on_down: lb::core::config::FlowsOnDown::Keep,
        guarded: false,
    };
    {
        let mut dp = lb::kernel::dataplane::Dataplane::load(limits, Some(&dir))?;
        assert_eq!(dp.vip_filter()?, Default::default(), "empty at first");
        dp.set_vip(&(v4, 443, Protocol::Tcp), &entry)?;
        dp.set_vip(&(v6, 443, Protocol::Tcp), &entry)?;
        let f = dp.vip_filter()?;
        for a in [v4, v6] {
            let (w, fam) = words(a);
            assert!(f.may_hold(fam, &w), "{a} is in the filter");
        }
        let (w, fam) = words(other);
        assert!(!f.may_hold(fam, &w), "{other} has no bit of its own");
        dp.remove_vip(&(v6, 443, Protocol::Tcp))?;
        let (w, fam) = words(v6);
        assert!(!dp.vip_filter()?.may_hold(fam, &w), "removed, rebuilt");
    }
    let adopted = lb::kernel::dataplane::Dataplane::load(limits, Some(&dir))?;
    let (w, fam) = words(v4);
    assert!(
        adopted.vip_filter()?.may_hold(fam, &w),
        "rebuilt from the pinned VIPS at load"
    );
    Ok(())
}

/// `VIP_INDEX` holds each service's `VIPS` key and entry under its id,
/// sealed: written with the service, moved when its id changes, cleared
/// when it goes (never a marker's), and rebuilt from adopted entries at
/// load (it is not pinned).
#[test]
fn the_vip_index_follows_the_vip_table() -> Result<()> {
    use lb::core::{config::Protocol, tables::Tables as _};
    use lb_common::maps::VipRecord;
    require_root()?;
    let pins = PinDir::new("index");
    let dir = pins.0.clone();
    let limits = small_limits();
    let v4: std::net::IpAddr = "10.100.0.1".parse()?;
    let web = (v4, 443, Protocol::Tcp);
    let dns = (v4, 53, Protocol::Udp);
    let entry = |id| lb::core::tables::VipEntry {
        id,
        hash: lb::core::config::HashMode::SourceIp,
        flows_on_down: lb::core::config::FlowsOnDown::Keep,
        guarded: false,
    };
    let whole = |r: &VipRecord| VipRecord::sealed_words(&r.words(), r.seal);
    {
        let mut dp = lb::kernel::dataplane::Dataplane::load(limits, Some(&dir))?;
        dp.set_vip(&web, &entry(1))?;
        dp.set_vip(&dns, &entry(2))?;
        dp.set_marker(
            v4,
            &lb::core::tables::Marker {
                id: 1,
                icmp_echo: true,
            },
        )?;
        // The marker (which carries id 1 too) left VIP 1's record alone.
        let r = dp.vip_record(1)?;
        assert!(whole(&r), "sealed: {r:?}");
        assert_eq!(r.key, lb::kernel::codec::vip_key(&web));
        assert_eq!(r.meta, lb::kernel::codec::vip_meta(&entry(1)));
        assert!(whole(&dp.vip_record(2)?));
        assert_eq!(
            dp.vip_record(0)?,
            VipRecord::default(),
            "an unused id has none"
        );
        // The same service under another id: the old slot is cleared.
        dp.set_vip(&web, &entry(3))?;
        assert_eq!(dp.vip_record(1)?, VipRecord::default(), "moved away");
        assert_eq!(dp.vip_record(3)?.key, lb::kernel::codec::vip_key(&web));
        dp.remove_vip(&dns)?;
        assert_eq!(dp.vip_record(2)?, VipRecord::default(), "removed");
    }
    let adopted = lb::kernel::dataplane::Dataplane::load(limits, Some(&dir))?;
    let r = adopted.vip_record(3)?;
    assert!(
        whole(&r) && r.key == lb::kernel::codec::vip_key(&web),
        "rebuilt from the pinned VIPS at load: {r:?}"
    );
    assert_eq!(adopted.vip_record(2)?, VipRecord::default());
    Ok(())
}

/// Tables small enough to load in a moment.
fn small_limits() -> lb::core::config::Limits {
    lb::core::config::Limits {
        max_vips: 4,
        max_backends: 16,
        ring_size: 251,
        conntrack_size: 4096,
        ..lb::core::config::Limits::default()
    }
}

/// A pin directory of this test process, emptied and removed on drop (also
/// when the test fails).
struct PinDir(std::path::PathBuf);

impl PinDir {
    fn new(tag: &str) -> PinDir {
        PinDir(std::path::PathBuf::from(format!(
            "/sys/fs/bpf/lbt-{}-{tag}",
            std::process::id()
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = lb::kernel::pins::reset_pinned(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
