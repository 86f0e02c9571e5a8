//! Two build steps:
//! - Relinks the agent when `scripts/health.order` changes. scripts/build-static passes that
//!   file to the linker (lld --symbol-ordering-file) through RUSTFLAGS, which names the file but
//!   not its contents, so without this cargo would keep a binary laid out by the old order.
//! - Writes Mozilla's root certificates (the webpki-root-certs crate, a build dependency) into
//!   `OUT_DIR/roots.der`, one DER certificate after another, for `agent/aws/roots.rs` to put in
//!   a section of its own: linked as the crate's statics, their 130 KB sat in the middle of
//!   `.rodata` and `agent health`, which never reads them, touched 0.2 MB more (BENCHMARKS.md).
fn main() {
    println!("cargo:rerun-if-changed=scripts/health.order");
    println!("cargo:rerun-if-changed=build.rs");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let der: Vec<u8> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
    std::fs::write(out.join("roots.der"), &der).expect("write roots.der");
    std::fs::write(out.join("roots_len.rs"), format!("{}", der.len())).expect("write roots_len.rs");
}
