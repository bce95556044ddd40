//! `cargo xtask demo`: the load balancer on its built-in lab.

fn main() -> anyhow::Result<()> {
    lb_tests::demo::run()
}
