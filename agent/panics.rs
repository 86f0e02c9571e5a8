//! Nothing takes PID 1 down: a panic in a side job stops that job, not the agent.
//!
//! The binary is built with `panic = "unwind"`, so a panic ends only what it happened in: a
//! thread (the health prober or server, the secrets refresher, the X-Ray receiver) ends and
//! drops what it held (the health server's socket closes, so `agent health` probes directly;
//! the refresher's control pipe closes, which the supervisor's loop notices), and a task on the
//! relay's runtime (one OTLP request, one sink) ends there, tokio catching it. The supervisor's
//! own loop runs on the main thread, which no other thread's panic reaches; state it shares
//! with the others is behind locks that ignore poisoning.
//!
//! The hook installed here replaces Rust's message on stderr: the first panic of each component
//! is one ERROR line (component, message, place), later ones are counted. `agent health` shows
//! them (`State::verdict`), and with `--health-exports-failing` they make it unhealthy. The
//! component is the task's name (`named`) or else the thread's.
//!
//! A panic message is the agent's own text (a `BUG:` expectation, an index out of bounds): no
//! code here formats a secret value into one. It is cut at 300 characters regardless.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

/// At most this many distinct components are remembered (each is logged once).
const MAX_REMEMBERED: usize = 32;
const MAX_MESSAGE: usize = 300;

/// One component that stopped after a panic.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub component: String,
    pub message: String,
    pub at: SystemTime,
}

static COUNT: AtomicU64 = AtomicU64::new(0);
static STOPPED: Mutex<Vec<Stopped>> = Mutex::new(Vec::new());

thread_local! {
    /// The component whose task this thread is polling now (`named`).
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Replaces the default panic output with one log line per component.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let component = CURRENT
            .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
            .ok()
            .flatten()
            .map(|c| c.to_string())
            .unwrap_or_else(|| std::thread::current().name().unwrap_or("unnamed thread").to_string());
        let payload = info.payload();
        let message =
            payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("(no message)");
        let message: String = message.chars().take(MAX_MESSAGE).collect();
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        record(&component, &message, &place);
    }));
}

fn record(component: &str, message: &str, place: &str) {
    if component == "main" {
        // The supervisor itself: nothing is left to keep the app company; the agent exits 101.
        tracing::error!(place, "panic in the supervisor: {message}; the agent exits (a bug: please report it)");
        return;
    }
    COUNT.fetch_add(1, Ordering::Relaxed);
    let mut stopped = STOPPED.lock().unwrap_or_else(|e| e.into_inner());
    if stopped.iter().any(|s| s.component == component) {
        tracing::debug!(component, place, "panic again: {message}");
        return;
    }
    tracing::error!(
        component,
        place,
        "panic: {message}; {component} stopped, the app and the rest of the agent keep running (a bug: please report it)"
    );
    if stopped.len() < MAX_REMEMBERED {
        stopped.push(Stopped { component: component.to_string(), message: message.to_string(), at: SystemTime::now() });
    }
}

/// How many panics there were.
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// The components that stopped after a panic, first first.
pub fn stopped() -> Vec<Stopped> {
    STOPPED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `fut`, with panics in it attributed to `component`.
pub fn named<F: Future>(component: impl Into<Arc<str>>, fut: F) -> Named<F> {
    Named { component: component.into(), fut: Box::pin(fut) }
}

pub struct Named<F> {
    component: Arc<str>,
    fut: Pin<Box<F>>,
}

/// Puts the previous component back, also when the poll unwinds.
struct Restore(Option<Arc<str>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
    }
}

impl<F: Future> Future for Named<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = CURRENT.with(|c| c.replace(Some(self.component.clone())));
        let _restore = Restore(previous);
        self.fut.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_named_task_is_attributed_and_remembered_once() {
        install_hook();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let before = count();
        let first = rt.block_on(async { tokio::spawn(named("unit-test component", async { panic!("one") })).await });
        let second = rt.block_on(async { tokio::spawn(named("unit-test component", async { panic!("two") })).await });
        assert!(first.unwrap_err().is_panic() && second.unwrap_err().is_panic());
        assert!(count() >= before + 2);
        let mine: Vec<Stopped> = stopped().into_iter().filter(|s| s.component == "unit-test component").collect();
        assert_eq!(mine.len(), 1, "remembered once: {mine:?}");
        assert_eq!(mine[0].message, "one");
        // Outside the task, the name is gone again.
        assert!(CURRENT.with(|c| c.borrow().is_none()));
    }
}
