//! The one export loop, shared by every sink (PutTraceSegments, OTLP upstreams, the X-Ray→OTLP
//! converter): a `Queue` that sources push into, and `run`, which sends batches from it —
//! a full batch as soon as one fills, the rest every flush interval — and handles what every
//! sink needs alike: backoff with jitter or the server's Retry-After, the health of exports,
//! problems logged once per kind, counts every minute, and the final flush.
//!
//! Shutdown is a message carrying its deadline (as opentelemetry-sdk's BatchSpanProcessor
//! does): on it the loop sends what is left until the deadline, counts whatever is still
//! waiting or in flight then as dropped, logs the final counts and returns them.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::buffer::{Buffer, Item};
use super::counters::{Counters, ExportHealth, Snapshot};
use super::problems::Problems;

/// The longest pause between tries, however many failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// How a sink wants its batches cut.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Things (segments, spans) waiting that make a batch worth sending before the interval.
    pub ready: u64,
    /// At most this many items, things and bytes in one batch (one item always goes).
    pub items: usize,
    pub count: u64,
    pub bytes: usize,
}

/// Items waiting for one sink, and what happened to them.
pub struct Queue<T> {
    /// The upstream, for logs and `agent health`.
    pub name: String,
    /// What it carries, for logs: "X-Ray segments", "OTLP spans".
    pub what: &'static str,
    buffer: Mutex<Buffer<T>>,
    ready: Notify,
    limits: Limits,
    pub counters: Counters,
    pub health: Arc<ExportHealth>,
}

impl<T: Item> Queue<T> {
    pub fn new(name: impl Into<String>, what: &'static str, budget: usize, limits: Limits) -> Arc<Queue<T>> {
        Arc::new(Queue {
            name: name.into(),
            what,
            buffer: Mutex::new(Buffer::new(budget)),
            ready: Notify::new(),
            limits,
            counters: Counters::default(),
            health: Arc::new(ExportHealth::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Buffer<T>> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds items a source took in; counts them as received, and what the budget pushed out
    /// as dropped; wakes the loop when a batch has filled.
    pub fn push(&self, items: impl IntoIterator<Item = T>) {
        let (mut received, mut dropped) = (0, 0);
        let mut b = self.lock();
        let before = b.count();
        for item in items {
            received += item.count();
            dropped += b.push(item);
        }
        let now = b.count();
        drop(b);
        Counters::add(&self.counters.received, received);
        Counters::add(&self.counters.dropped, dropped);
        if before < self.limits.ready && now >= self.limits.ready {
            self.ready.notify_one();
        }
    }

    /// Whether `bytes` more fit without dropping anything.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.lock().has_room(bytes)
    }

    /// The next batch: a full one, or (`partial`) whatever is waiting.
    fn take(&self, partial: bool) -> Vec<T> {
        let mut b = self.lock();
        if b.is_empty() || (!partial && b.count() < self.limits.ready) {
            return Vec::new();
        }
        b.take_within(self.limits.items, self.limits.count, self.limits.bytes)
    }

    /// Everything still waiting, emptied out; how many things it held.
    pub fn clear(&self) -> u64 {
        let mut b = self.lock();
        let n = b.count();
        b.take(usize::MAX);
        n
    }
}

/// What one send came to.
pub enum Sent<T> {
    /// Taken. `rejected` things were refused for good (`reason` says why, logged once per kind);
    /// `retry` were not taken this time and go back to the front of the queue.
    Done { rejected: u64, retry: Vec<T>, reason: String },
    /// Not taken, for a reason that may pass: the whole batch goes back, and the loop pauses
    /// for `after` (the server's Retry-After) or its own backoff.
    Retry { batch: Vec<T>, reason: String, after: Option<Duration> },
    /// Not taken, and sending it again would not help: the batch is dropped.
    Failed { reason: String },
}

impl<T> Sent<T> {
    pub fn done() -> Sent<T> {
        Sent::Done { rejected: 0, retry: Vec::new(), reason: String::new() }
    }
}

/// Where batches go. `send` is given the batch by value and hands back what is to be retried.
pub trait Sink: Send + 'static {
    type Item: Item + Send + 'static;
    fn send(&mut self, batch: Vec<Self::Item>) -> impl Future<Output = Sent<Self::Item>> + Send;
    /// Called once at the end: log anything the sink counted itself.
    fn finish(&mut self) {}
}

/// The shutdown message, sent once: stop at this deadline. `Stop` is the sending half, `Deadline`
/// the loop's; a `Stop` dropped unsent means "now".
pub struct Stop(watch::Sender<Option<Instant>>);

#[derive(Clone)]
pub struct Deadline(watch::Receiver<Option<Instant>>);

impl Stop {
    pub fn new() -> (Stop, Deadline) {
        let (tx, rx) = watch::channel(None);
        (Stop(tx), Deadline(rx))
    }

    pub fn stop(&self, deadline: Instant) {
        let _ = self.0.send(Some(deadline));
    }
}

impl Deadline {
    /// The deadline, once the stop has been sent.
    pub fn get(&self) -> Option<Instant> {
        match *self.0.borrow() {
            Some(d) => Some(d),
            None if self.0.has_changed().is_err() => Some(Instant::now()),
            None => None,
        }
    }

    /// Waits for the stop; its deadline.
    pub async fn wait(&mut self) -> Instant {
        loop {
            if let Some(d) = self.get() {
                return d;
            }
            if self.0.changed().await.is_err() {
                return Instant::now();
            }
        }
    }
}

/// A jittered, doubling pause: 200 ms, 400 ms, … up to `MAX_BACKOFF`.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(FIRST_BACKOFF)
    }
}

impl Backoff {
    pub fn pause(&mut self) -> Duration {
        let pause = self.0.mul_f64(0.5 + fastrand::f64());
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        pause
    }
}

/// Sends `queue`'s batches to `sink` until told to stop, then flushes until the deadline.
pub async fn run<S: Sink>(mut sink: S, queue: Arc<Queue<S::Item>>, interval: Duration, mut stop: Deadline) -> Snapshot {
    let mut state = Loop { backoff: Backoff::default(), problems: Problems::default() };
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    minute.tick().await;
    let mut last_logged = Snapshot::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let deadline = 'run: loop {
        let partial = tokio::select! {
            d = stop.wait() => break d,
            _ = queue.ready.notified() => false,
            _ = tick.tick() => true,
            _ = minute.tick() => {
                let now = queue.counters.snapshot();
                if now != last_logged {
                    now.log(queue.what, &queue.name, false);
                    last_logged = now;
                }
                continue;
            }
        };
        // Send while there are batches; after a failure, pause (a stop cuts the pause short).
        while let Some(pause) = state.send_one(&mut sink, &queue, partial, &mut stop).await {
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                d = stop.wait() => break 'run d,
                _ = tokio::time::sleep(pause) => {}
            }
            break;
        }
    };
    // The final flush: everything, retrying what may pass, until the deadline.
    while let Some(pause) = state.send_one(&mut sink, &queue, true, &mut stop).await {
        if Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    let left = queue.clear();
    if left > 0 {
        Counters::add(&queue.counters.dropped, left);
        tracing::warn!(upstream = %queue.name, unsent = left, "the flush timeout ran out before everything was sent (--flush-timeout)");
    }
    state.problems.log_counts(&queue.name);
    sink.finish();
    let s = queue.counters.snapshot();
    s.log(queue.what, &queue.name, true);
    s
}

/// `run` as a task of its own (named `component` for panics). If it panics, the sink is gone:
/// its queue fills and the door answers 503 (the app keeps its data); at the stop, everything
/// it had received and not sent or rejected (its buffer, the batch in flight) is counted as
/// dropped, so the final counts still add up.
pub fn spawn<S: Sink>(
    component: String,
    sink: S,
    queue: Arc<Queue<S::Item>>,
    interval: Duration,
    stop: Deadline,
) -> tokio::task::JoinHandle<Snapshot> {
    let task = tokio::spawn(crate::panics::named(component.clone(), run(sink, queue.clone(), interval, stop.clone())));
    tokio::spawn(async move {
        match task.await {
            Ok(s) => s,
            Err(_) => close_books(&component, &queue, stop).await,
        }
    })
}

async fn close_books<T: Item>(component: &str, queue: &Queue<T>, mut stop: Deadline) -> Snapshot {
    stop.wait().await;
    queue.clear();
    let s = queue.counters.snapshot();
    let lost = s.received.saturating_sub(s.sent + s.rejected + s.dropped);
    Counters::add(&queue.counters.dropped, lost);
    tracing::error!(upstream = %queue.name, count = lost, "{component} had stopped after a panic: the {} it held are counted as dropped", noun(queue.what));
    let s = queue.counters.snapshot();
    s.log(queue.what, &queue.name, true);
    s
}

struct Loop {
    backoff: Backoff,
    problems: Problems,
}

/// "spans" of "OTLP spans": what a batch holds, for messages.
fn noun(what: &str) -> &str {
    what.rsplit(' ').next().unwrap_or(what)
}

/// The kind of a problem: its reason up to the first colon (an upstream's name, an API's error).
fn kind(prefix: &str, reason: &str) -> String {
    format!("{prefix}:{}", reason.split(':').next().unwrap_or(""))
}

impl Loop {
    /// Sends one batch if there is one (a full one unless `partial`). `None`: nothing (more) to
    /// send now; `Some(ZERO)`: sent, go on; `Some(pause)`: failed, try again after `pause`.
    /// Once a stop has come, a send still under way at its deadline is given up and its batch
    /// counted as dropped.
    async fn send_one<S: Sink>(&mut self, sink: &mut S, q: &Queue<S::Item>, partial: bool, stop: &mut Deadline) -> Option<Duration> {
        if stop.get().is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let batch = q.take(partial);
        if batch.is_empty() {
            return None;
        }
        let n: u64 = batch.iter().map(Item::count).sum();
        crate::fault::point("sink");
        let send = sink.send(batch);
        tokio::pin!(send);
        let before_stop = match stop.get() {
            Some(d) => Err(d),
            None => tokio::select! {
                s = &mut send => Ok(s),
                d = stop.wait() => Err(d),
            },
        };
        let sent = match before_stop {
            Ok(s) => s,
            Err(d) => match tokio::time::timeout_at(d, &mut send).await {
                Ok(s) => s,
                Err(_) => {
                    Counters::add(&q.counters.dropped, n);
                    return None;
                }
            },
        };
        match sent {
            Sent::Done { rejected, retry, reason } => {
                q.health.succeeded();
                self.backoff = Backoff::default();
                let back: u64 = retry.iter().map(Item::count).sum();
                let rejected = rejected.min(n - back);
                Counters::add(&q.counters.sent, n - back - rejected);
                if rejected > 0 {
                    Counters::add(&q.counters.rejected, rejected);
                    self.problems.once(&kind("refused", &reason), || {
                        format!("{} refused some of a batch: {reason} (further refusals are counted as rejected)", q.name)
                    });
                }
                if back > 0 {
                    Counters::add(&q.counters.retried, back);
                    Counters::add(&q.counters.dropped, q.lock().put_back(retry));
                }
                Some(Duration::ZERO)
            }
            Sent::Retry { batch, reason, after } => {
                q.health.failed(&reason);
                self.problems.once(&kind("retry", &reason), || format!("{reason}; keeping the {} and retrying", noun(q.what)));
                Counters::add(&q.counters.retried, n);
                Counters::add(&q.counters.dropped, q.lock().put_back(batch));
                Some(after.unwrap_or_else(|| self.backoff.pause()).max(Duration::from_millis(50)))
            }
            Sent::Failed { reason } => {
                q.health.failed(&reason);
                self.problems.once(&kind("failed", &reason), || format!("{reason}; the batch is dropped"));
                Counters::add(&q.counters.dropped, n);
                Some(Duration::ZERO)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex as StdMutex;

    use super::*;

    type Calls = Arc<StdMutex<Vec<(Instant, Vec<String>)>>>;

    /// A sink that answers from a script (then `Done`), and records when each batch came.
    #[derive(Clone, Default)]
    struct Scripted {
        answers: Arc<StdMutex<VecDeque<Answer>>>,
        calls: Calls,
    }

    #[derive(Clone, Copy)]
    enum Answer {
        Retry(Option<Duration>),
        Fail,
        Hang,
    }

    impl Sink for Scripted {
        type Item = String;
        async fn send(&mut self, batch: Vec<String>) -> Sent<String> {
            self.calls.lock().unwrap().push((Instant::now(), batch.clone()));
            let next = self.answers.lock().unwrap().pop_front();
            match next {
                None => Sent::done(),
                Some(Answer::Retry(after)) => Sent::Retry { batch, reason: "test: busy".into(), after },
                Some(Answer::Fail) => Sent::Failed { reason: "test: no".into() },
                Some(Answer::Hang) => std::future::pending().await,
            }
        }
    }

    const LIMITS: Limits = Limits { ready: 10, items: 10, count: 10, bytes: usize::MAX };

    fn setup(answers: &[Answer]) -> (Scripted, Arc<Queue<String>>) {
        let sink = Scripted::default();
        sink.answers.lock().unwrap().extend(answers.iter().cloned());
        (sink, Queue::new("test", "items", 1 << 20, LIMITS))
    }

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item-{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_with_jitter_then_recovers_and_the_counts_add_up() {
        let (sink, q) = setup(&[Answer::Retry(None), Answer::Retry(None)]);
        let (stop, deadline) = Stop::new();
        let start = Instant::now();
        let task = tokio::spawn(run(sink.clone(), q.clone(), Duration::from_secs(1), deadline));
        q.push(items(3));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let calls: Vec<Duration> = sink.calls.lock().unwrap().iter().map(|(t, _)| *t - start).collect();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[0], Duration::from_secs(1), "the partial batch waits for the interval");
        let first = calls[1] - calls[0];
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(300) + Duration::from_secs(1), "{first:?}");
        stop.stop(Instant::now() + Duration::from_secs(1));
        let s = task.await.unwrap();
        assert_eq!((s.received, s.sent, s.retried, s.dropped), (3, 3, 6, 0));
        assert!(s.balanced());
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let (sink, q) = setup(&[Answer::Retry(Some(Duration::from_secs(7)))]);
        let (stop, deadline) = Stop::new();
        let task = tokio::spawn(run(sink.clone(), q.clone(), Duration::from_millis(100), deadline));
        q.push(items(10)); // a full batch: sent at once
        tokio::time::sleep(Duration::from_secs(20)).await;
        let calls: Vec<Instant> = sink.calls.lock().unwrap().iter().map(|(t, _)| *t).collect();
        assert_eq!(calls.len(), 2);
        assert!(calls[1] - calls[0] >= Duration::from_secs(7), "{:?}", calls[1] - calls[0]);
        stop.stop(Instant::now());
        assert!(task.await.unwrap().balanced());
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_flush_sends_everything_then_stops_at_the_deadline() {
        // Everything waiting goes out at the stop, without waiting for the interval.
        let (sink, q) = setup(&[]);
        let (stop, deadline) = Stop::new();
        let task = tokio::spawn(run(sink.clone(), q.clone(), Duration::from_secs(3600), deadline));
        q.push(items(25));
        tokio::task::yield_now().await;
        stop.stop(Instant::now() + Duration::from_secs(1));
        let s = task.await.unwrap();
        assert_eq!((s.received, s.sent, s.dropped), (25, 25, 0));
        assert_eq!(sink.calls.lock().unwrap().len(), 3, "batches of at most 10");

        // An upstream that keeps failing: retried until the deadline, then counted as dropped.
        let (sink, q) = setup(&[Answer::Retry(None); 100]);
        let (stop, deadline) = Stop::new();
        let task = tokio::spawn(run(sink.clone(), q.clone(), Duration::from_secs(3600), deadline));
        q.push(items(5));
        tokio::task::yield_now().await;
        let start = Instant::now();
        stop.stop(start + Duration::from_secs(2));
        let s = task.await.unwrap();
        assert!(Instant::now() - start <= Duration::from_secs(2), "{:?}", Instant::now() - start);
        assert_eq!((s.received, s.sent, s.dropped), (5, 0, 5));
        assert!(s.balanced());

        // A send still under way at the deadline: given up, its batch counted as dropped.
        let (sink, q) = setup(&[Answer::Hang]);
        let (stop, deadline) = Stop::new();
        let task = tokio::spawn(run(sink, q.clone(), Duration::from_millis(10), deadline));
        q.push(items(4));
        tokio::time::sleep(Duration::from_millis(50)).await; // the send has started and hangs
        let start = Instant::now();
        stop.stop(start + Duration::from_secs(3));
        let s = task.await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        assert_eq!((s.received, s.sent, s.dropped), (4, 0, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_batches_are_dropped_and_budget_overflow_is_counted() {
        let (sink, _) = setup(&[Answer::Fail]);
        let q = Queue::new("small", "items", 20, LIMITS); // two 6-byte items fit, not four
        let (stop, deadline) = Stop::new();
        let task = tokio::spawn(run(sink, q.clone(), Duration::from_secs(3600), deadline));
        q.push(items(4));
        assert!(!q.has_room(100));
        stop.stop(Instant::now() + Duration::from_secs(1));
        let s = task.await.unwrap();
        assert_eq!((s.received, s.sent, s.dropped), (4, 0, 4), "2 over the budget, 2 failed for good");
        assert!(s.balanced());
    }
}
