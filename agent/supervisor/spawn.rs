//! Starting the child: its own process group, inherited stdio, a clean signal state, and
//! exec failures turned into the shell's 126/127 with a message that names the program.
//!
//! std's `Command` already does most of what an init needs: every descriptor the agent opens is
//! close-on-exec (so nothing but stdin/stdout/stderr reaches the child), SIGPIPE is reset to
//! default in the child, and exec errors come back to the parent through a pipe instead of as a
//! mystery exit code. The agent adds the process group, empties the signal mask itself (it
//! blocks nearly every signal, and the app must not inherit that), and, on an interactive
//! terminal, hands the terminal to the child's group.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::Pid;

use crate::exit::Code;

/// What to run and the environment it gets on top of the agent's own.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Variables the child must not see, inherited or from the secrets (the agent's own
    /// `AGENT_*`; the OTLP upstream's headers while the agent relays).
    pub env_remove: Vec<String>,
    /// The secrets; they override inherited variables, and a refresh replaces them.
    pub env: Vec<(OsString, OsString)>,
    /// The agent's own settings for the child (the X-Ray and OTLP addresses); set last, and kept
    /// across restarts.
    pub env_fixed: Vec<(OsString, OsString)>,
}

impl ChildSpec {
    pub fn new(command: &[OsString]) -> Self {
        let (program, args) = command.split_first().expect("clap requires CMD");
        ChildSpec { program: program.clone(), args: args.to_vec(), env_remove: Vec::new(), env: Vec::new(), env_fixed: Vec::new() }
    }

    /// The program as given, for log lines. Arguments are never logged: they may hold secrets.
    pub fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run {program:?}: {reason}")]
    NotFound { program: String, reason: String },
    #[error("cannot run {program:?}: {reason}")]
    CannotExecute { program: String, reason: String },
    #[error("cannot start {program:?}: {source}")]
    Os { program: String, source: io::Error },
}

impl SpawnError {
    pub fn code(&self) -> Code {
        match self {
            SpawnError::NotFound { .. } => Code::NotFound,
            SpawnError::CannotExecute { .. } => Code::CannotExecute,
            SpawnError::Os { .. } => Code::Internal,
        }
    }

    fn from_io(program: &OsStr, err: io::Error) -> Self {
        let name = program.to_string_lossy().into_owned();
        let has_slash = name.contains('/');
        let exists = has_slash && std::path::Path::new(program).exists();
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
                let reason = if exists {
                    "its interpreter was not found (check the #! line of the script)".to_string()
                } else if has_slash {
                    "no such file".to_string()
                } else {
                    let path = std::env::var("PATH").unwrap_or_default();
                    format!("not found in PATH ({path})")
                };
                SpawnError::NotFound { program: name, reason }
            }
            Some(libc::EACCES) | Some(libc::EPERM) => SpawnError::CannotExecute {
                program: name,
                reason: "permission denied (is it executable, chmod +x, and not on a noexec mount?)".into(),
            },
            Some(libc::ENOEXEC) | Some(libc::ETXTBSY) | Some(libc::ELOOP) | Some(libc::E2BIG) | Some(libc::EISDIR) | Some(libc::ENAMETOOLONG) => {
                SpawnError::CannotExecute { program: name, reason: err.to_string() }
            }
            _ => SpawnError::Os { program: name, source: err },
        }
    }
}

/// Starts the child and returns its pid. The caller's reaper collects it; nobody else waits.
pub fn spawn(spec: &ChildSpec) -> Result<Pid, SpawnError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    for name in &spec.env_remove {
        cmd.env_remove(name);
    }
    let removed = |k: &OsString| spec.env_remove.iter().any(|r| k.as_os_str() == r.as_str());
    cmd.envs(spec.env.iter().filter(|(k, _)| !removed(k)).map(|(k, v)| (k, v)));
    cmd.envs(spec.env_fixed.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);

    // On an interactive terminal where the agent is in the foreground, give the terminal to the
    // child's group so the app can read it (a debugger prompt) and Ctrl-C/Ctrl-Z reach it.
    // SAFETY: isatty/tcgetpgrp/getpgrp only read process and terminal state.
    let hand_over_tty = unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() };
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe functions
    // (sigemptyset, sigaddset, sigprocmask, tcsetpgrp, getpid).
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if hand_over_tty {
                // The child is now a background group; SIGTTOU must be blocked for tcsetpgrp.
                libc::sigaddset(&mut set, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::tcsetpgrp(0, libc::getpid());
                libc::sigemptyset(&mut set);
            }
            // The agent blocks nearly every signal; the app must start with none blocked.
            // Done here explicitly rather than trusting the spawn path std picks: without a
            // pre_exec hook std may use posix_spawn, and the child was seen inheriting the mask.
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let child = cmd.spawn().map_err(|e| SpawnError::from_io(&spec.program, e))?;
    // Dropping `child` neither waits nor kills; the reaper owns its status from here on.
    Ok(Pid::from_raw(child.id() as i32))
}
