//! Rebuild when the bpf-linker on PATH changes (it is an undeclared
//! dependency of every bin in this crate), as the aya template does.
fn main() {
    // LLVM's BPF backend assumes strict alignment and splits every store to a
    // packet header into byte stores (a 20 B IPv4 header became 20 `stb` plus
    // shifts). The verifier accepts misaligned *packet* access on CPUs with
    // efficient unaligned access (x86-64, arm64), so headers are written in
    // whole words: 11% fewer instructions and 10-40 ns per forwarded packet
    // in the bench. On a strict-alignment CPU the verifier rejects the
    // program at load, loudly; stack access is checked strictly everywhere,
    // so what loads here loads on every supported host.
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not on PATH; run `cargo xtask setup`"),
    }
}
