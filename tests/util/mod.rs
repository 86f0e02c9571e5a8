//! Shared helpers for the black-box tests: find the binaries, run the agent with a deadline,
//! wait on conditions (never on bare sleeps), and say clearly when a test cannot run here. One
//! file per concern; every test file sees them all through `use util::*`.
#![allow(dead_code, unused_imports)]

mod apps;
mod aws;
mod bin;
mod net;
mod procs;
mod secrets;
mod wait;

pub use apps::*;
pub use aws::*;
pub use bin::*;
pub use net::*;
pub use procs::*;
pub use secrets::*;
pub use wait::*;
