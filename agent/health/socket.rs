//! Where the supervisor serves health: an abstract unix socket by default.
//!
//! An abstract socket has no file, so it works with ECS `readonlyRootFilesystem` and for any
//! user. Its namespace is the network namespace, which all containers of an awsvpc task share,
//! so the default name carries the PID namespace's id (each container has its own): two
//! containers running the agent in one task never answer for each other, and `agent health`,
//! run by ECS inside the same container, computes the same name.

use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketName {
    Abstract(String),
    Path(PathBuf),
}

impl SocketName {
    /// `/PATH` is a filesystem socket; anything else an abstract name (a leading `@` is optional).
    pub fn parse(s: &str) -> SocketName {
        if s.starts_with('/') {
            SocketName::Path(PathBuf::from(s))
        } else {
            SocketName::Abstract(s.trim_start_matches('@').to_string())
        }
    }

    /// `agent-health-<pid namespace inode>`, or `agent-health` where /proc cannot tell.
    pub fn default_name() -> SocketName {
        let ns = std::fs::read_link("/proc/self/ns/pid").ok().and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.strip_prefix("pid:[").and_then(|r| r.strip_suffix(']')).map(str::to_string)
        });
        SocketName::Abstract(ns.map_or("agent-health".to_string(), |n| format!("agent-health-{n}")))
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        match self {
            SocketName::Abstract(n) => SocketAddr::from_abstract_name(n.as_bytes()),
            SocketName::Path(p) => SocketAddr::from_pathname(p),
        }
    }
}

impl fmt::Display for SocketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketName::Abstract(n) => write!(f, "@{n}"),
            SocketName::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot serve health on {name}: {source}{hint}")]
pub struct BindError {
    name: SocketName,
    source: io::Error,
    hint: &'static str,
}

pub fn bind(name: &SocketName) -> Result<UnixListener, BindError> {
    let err = |source: io::Error| {
        let hint = if source.kind() == io::ErrorKind::AddrInUse {
            " (another process in this network namespace has it: give each agent its own --health-socket / AGENT_HEALTH_SOCKET)"
        } else {
            ""
        };
        BindError { name: name.clone(), source, hint }
    };
    UnixListener::bind_addr(&name.addr().map_err(err)?).map_err(err)
}

pub fn connect(name: &SocketName) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&name.addr()?)
}
