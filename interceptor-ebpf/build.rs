use which::which;

/// Rebuild when bpf-linker changes (the aya-template convention): the linker is
/// not a cargo dependency, so cargo cannot see it otherwise.
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
