//! Nested cargo runs without the outer package's environment. `cargo run`
//! and `cargo test` describe the running package in variables that build
//! scripts (ring's) fingerprint, so a nested cargo that saw them would
//! rebuild what a plain `cargo build` built, and back again. Shared with
//! `lb_tests::procs` (by `#[path]`), which starts nested builds too.

use std::process::Command;

/// Drops the variables that describe the running package from `cmd`'s
/// environment.
pub fn without_package_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k == "OUT_DIR"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
}
