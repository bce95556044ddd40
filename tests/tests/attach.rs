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
            .load(lb::objects::BALANCER)
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
