//! Rebuild when the bpf-linker on PATH changes (it is an undeclared
//! dependency of every bin in this crate), as the aya template does.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not on PATH; run `cargo xtask setup`"),
    }
}
