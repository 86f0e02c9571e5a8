//! `agent version`: name, version, target and whether the binary is statically linked.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    let linkage = if cfg!(target_feature = "crt-static") { "static" } else { "dynamic" };
    println!("agent {} ({}-{}, {linkage})", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH, std::env::consts::OS);
    ExitCode::SUCCESS
}
