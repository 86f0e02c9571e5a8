//! The agent: a container ENTRYPOINT that supervises an app as PID 1.
//!
//! The binary (`main.rs`) is a thin table of contents over these modules; they are a library so
//! that tests can drive parts in-process.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod exit;
pub mod fault;
pub mod health;
pub mod logging;
pub mod memory;
pub mod panics;
pub mod proxy;
pub mod relay;
pub mod secrets;
pub mod signals;
pub mod supervisor;
