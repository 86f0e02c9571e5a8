//! One file per subcommand; each returns the process exit code.

pub mod env;
pub mod health;
pub mod run;
pub mod version;
