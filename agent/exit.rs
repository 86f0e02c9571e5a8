//! Exit codes are API: ECS, Docker and CI scripts act on them, so they live in one place.
//!
//! `agent run` exits with the child's own code (or 128+N when the child died of signal N),
//! after any `--map-exit` rewrite. When the agent itself fails before or instead of the child,
//! it uses one of the codes below; they come from BSD `sysexits.h` where one fits, so they are
//! unlikely to be mistaken for an application's own codes. The README has the same table.

use std::process::ExitCode;

/// The agent's own exit codes. The child's codes pass through unchanged and are not listed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// `agent health`: the app is healthy.
    Healthy = 0,
    /// `agent health`: unhealthy, not configured, or no answer in time.
    Unhealthy = 1,
    /// A flag, an environment variable or the command line was wrong (EX_USAGE).
    Usage = 64,
    /// A required secret could not be loaded; the child was never started (EX_UNAVAILABLE).
    Secrets = 69,
    /// An internal error of the agent, such as a failed `fork` (EX_SOFTWARE).
    Internal = 70,
    /// The config file could not be read, or a value in it was wrong (EX_CONFIG).
    Config = 78,
    /// The program was found but could not be executed (permission, format) — as a shell does.
    CannotExecute = 126,
    /// The program was not found — as a shell does.
    NotFound = 127,
}

impl Code {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code.as_u8())
    }
}

/// Why the agent itself stops before or instead of the app: the exit code it means, and one
/// line for the log. Library errors turn into this at one boundary (`From` below); `main` logs
/// it through the logger (so as JSON with `--log-format json`) and exits with its code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub code: Code,
    pub message: String,
}

impl Fatal {
    pub fn new(code: Code, message: impl std::fmt::Display) -> Fatal {
        Fatal { code, message: message.to_string() }
    }

    /// An internal error with what the agent was doing: "cannot create the control pipe: …".
    pub fn internal(doing: &str, e: impl std::fmt::Display) -> Fatal {
        Fatal::new(Code::Internal, format!("{doing}: {e}"))
    }
}

macro_rules! config_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Fatal {
            fn from(e: $t) -> Fatal {
                Fatal::new(Code::Config, e)
            }
        }
    )*};
}
config_errors!(crate::config::ConfigError, crate::health::socket::BindError, crate::secrets::settings::SettingsError, crate::relay::RelayError);

/// The exit code a shell would report for a child's raw `waitpid` status:
/// its exit code, or 128+N when it was killed by signal N.
pub fn code_of_status(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)) as u8
    } else {
        // Stopped/continued statuses are never requested (no WUNTRACED), so this is unreachable
        // in practice; report it as an internal error rather than as success.
        Code::Internal.as_u8()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_a_shell() {
        // Raw wait statuses as the kernel encodes them: exit code in bits 8..16, signal in 0..7.
        assert_eq!(code_of_status(0), 0);
        assert_eq!(code_of_status(3 << 8), 3);
        assert_eq!(code_of_status(255 << 8), 255);
        assert_eq!(code_of_status(libc::SIGTERM), 143);
        assert_eq!(code_of_status(libc::SIGKILL), 137);
        assert_eq!(code_of_status(libc::SIGKILL | 0x80), 137, "core-dump bit is ignored");
    }
}
