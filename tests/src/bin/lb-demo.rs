//! `cargo xtask demo [--keep]`: the load balancer on its built-in lab;
//! `--keep` leaves it up, says how to reach it, and tears it down on Ctrl-C.
//! `cargo xtask lab up|down` run `lb-demo up|down [--state-dir DIR]`: the
//! same lab without the scenarios, left running in the background
//! (`lb-demo serve`) until `down`.

use lb_tests::{demo, kept};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => kept::up(&kept::state_dir_arg(&args[1..])?),
        Some("serve") => kept::serve(&kept::state_dir_arg(&args[1..])?),
        Some("down") => kept::down(&kept::state_dir_arg(&args[1..])?),
        None => demo::run(false),
        Some("--keep") if args.len() == 1 => demo::run(true),
        Some(other) => anyhow::bail!(
            "unknown argument {other:?}: lb-demo [--keep] | up | down [--state-dir DIR]"
        ),
    }
}
