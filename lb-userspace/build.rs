//! Builds the XDP programs of `lb-ebpf` for the BPF target with aya-build and
//! leaves the objects in OUT_DIR, where `src/objects.rs` embeds them.

use std::path::Path;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    // Fail with one line that says what to do instead of a page of linker
    // errors from deep inside the nested cargo build.
    if which::which("bpf-linker").is_err() {
        bail!(
            "bpf-linker is not on PATH: run `cargo xtask setup` (it builds bpf-linker 0.13 against the nightly toolchain's LLVM)"
        );
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir).join("../lb-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    let package = aya_build::Package {
        name: "lb-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the XDP programs (lb-ebpf) failed; `cargo xtask setup` installs the nightly rust-src component and bpf-linker they need")
}
