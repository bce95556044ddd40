//! The demo behind `cargo xtask demo`.

use anyhow::{Context as _, Result};
use aya::{
    EbpfLoader,
    programs::{Xdp, XdpMode},
};

use crate::netns::{Netns, require_root, veth};

pub fn run() -> Result<()> {
    require_root()?;
    println!("[1/3] creating a throwaway lab: two namespaces joined by a veth pair");
    let lb = Netns::new("demo-lb")?;
    let peer = Netns::new("demo-peer")?;
    veth(&lb, "lb0", &peer, "peer0")?;

    println!("[2/3] loading the embedded balancer and attaching it in driver mode on lb0");
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
    let info = prog.info()?;
    println!(
        "      attached: program id {} ({} bytes of JIT code)",
        info.id(),
        info.size_jitted()
    );

    println!("[3/3] tearing the lab down");
    Ok(())
}
