//! `cargo xtask demo [--keep]`: the load balancer on its built-in lab;
//! `--keep` leaves it up, says how to reach it, and tears it down on Ctrl-C.
//! `cargo xtask lab up|down` run `lb-demo up|down [--state-dir DIR]
//! [--stock]`: the same lab without the scenarios, left running in the
//! background (`lb-demo serve`) until `down`; `--stock` puts Debian's
//! nginx on the backends in place of the project's lab server.

use lb_tests::{
    demo,
    kept::{self, Args},
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => {
            let a = Args::parse(&args[1..])?;
            kept::up(&a.state_dir, a.stock)
        }
        Some("serve") => {
            let a = Args::parse(&args[1..])?;
            kept::serve(&a.state_dir, a.stock)
        }
        Some("down") => kept::down(&Args::parse(&args[1..])?.state_dir),
        None => demo::run(false),
        Some("--keep") if args.len() == 1 => demo::run(true),
        Some(other) => anyhow::bail!(
            "unknown argument {other:?}: lb-demo [--keep] | up [--stock] | down [--state-dir DIR]"
        ),
    }
}
