//! Commands to the supervisor from other threads (the secrets refresher): a channel, plus a
//! pipe that the supervisor's loop polls next to its signalfd, so a command wakes the loop the
//! way a signal does. The loop stays the only place that signals, restarts or reaps the child.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc;

use nix::fcntl::OFlag;

use crate::signals::Signo;

#[derive(Debug)]
pub enum Control {
    /// Stop the child gracefully (as on SIGTERM, with `--stop-timeout`) and start it again with
    /// this environment instead of the current one; not counted as a restart after failure.
    Restart(Vec<(OsString, OsString)>),
    /// Send this signal to the child (or its group, per `--signal-target`).
    Signal(Signo),
    /// Stop the child gracefully and exit, as if the agent had been sent SIGTERM.
    Exit,
}

pub struct ControlSender {
    tx: mpsc::Sender<Control>,
    wake: OwnedFd,
}

pub struct ControlReceiver {
    rx: mpsc::Receiver<Control>,
    wake: OwnedFd,
}

pub fn channel() -> nix::Result<(ControlSender, ControlReceiver)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let (tx, rx) = mpsc::channel();
    Ok((ControlSender { tx, wake: w }, ControlReceiver { rx, wake: r }))
}

impl ControlSender {
    pub fn send(&self, c: Control) {
        if self.tx.send(c).is_ok() {
            // A full pipe already means "wake up"; nothing more to do then.
            let _ = nix::unistd::write(self.wake.as_fd(), &[1]);
        }
    }
}

impl ControlReceiver {
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Every command sent so far, and whether the sender is still there. A sender that went
    /// away (the refresher's thread ended, after a panic say) closes the pipe, which would
    /// otherwise wake the loop at once forever.
    pub fn drain(&self) -> (Vec<Control>, bool) {
        let mut buf = [0u8; 64];
        let open = loop {
            match nix::unistd::read(self.wake.as_fd(), &mut buf) {
                Ok(0) => break false,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break true,
            }
        };
        (self.rx.try_iter().collect(), open)
    }
}
