//! Relinks the agent when `scripts/health.order` changes. scripts/build-static passes that file
//! to the linker (lld --symbol-ordering-file) through RUSTFLAGS, which names the file but not its
//! contents, so without this cargo would keep a binary laid out by the old order.
fn main() {
    println!("cargo:rerun-if-changed=scripts/health.order");
    println!("cargo:rerun-if-changed=build.rs");
}
