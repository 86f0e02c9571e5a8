//! One file per subcommand; each returns the process exit code.

pub mod health;
pub mod run;
pub mod version;
