//! `cargo xtask demo [--keep]`: the load balancer on its built-in lab;
//! `--keep` leaves it up, says how to reach it, and tears it down on Ctrl-C.

fn main() -> anyhow::Result<()> {
    let keep = std::env::args().skip(1).any(|a| a == "--keep");
    lb_tests::demo::run(keep)
}
