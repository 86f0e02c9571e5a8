//! Request bodies, read within a budget: the bytes of all the bodies a relay's listeners hold at
//! once (being read, or read and not yet decoded) are limited, and each body must arrive within
//! `BODY_TIMEOUT`. Without it, forty clients that each declare 15 MiB and send 2 MiB of it,
//! then stall, hold 80 MB of PID 1's memory for as long as they like (tests/hostile.rs).
//!
//! A body that does not fit in what is left is refused at once with 503 and Retry-After (the
//! app's SDK keeps its data and sends again); a declared Content-Length reserves its room before
//! a byte is read, an undeclared (chunked) body reserves as it arrives.
//!
//! The requests being read at once are counted too (each holds its task and hyper's state while
//! its body comes): one over the count is refused the same way, at once. For OTLP the count is
//! what the listeners allow anyway on one port (256 connections, 8 HTTP/2 calls each), so it
//! binds only when HTTP and gRPC have ports of their own.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A body must have arrived within this; a client trickling one is cut off.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The budget is kept in KiB (a semaphore's permits).
const UNIT: usize = 1024;

/// The shared budget of one or more listeners.
#[derive(Clone, Debug)]
pub struct Bodies {
    room: Arc<Semaphore>,
    bytes: usize,
    requests: Arc<Semaphore>,
    max_requests: usize,
}

/// Room held in the budget; given back when dropped (once the request has been dealt with).
#[derive(Debug, Default)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
    units: usize,
    /// The request's slot among those read at once.
    _request: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Over the request's own limit.
    TooLarge,
    /// Other bodies hold the budget, or as many requests as are read at once are being read:
    /// try again shortly (`Bodies::busy` says why).
    Busy,
    /// Not all there within `BODY_TIMEOUT`.
    Slow,
    /// The connection broke, or the body was malformed (chunked encoding, an HTTP/2 reset).
    Broken(String),
}

impl Bodies {
    /// A budget of `bytes` of bodies and `requests` requests being read at once.
    pub fn new(bytes: usize, requests: usize) -> Bodies {
        Bodies { room: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))), bytes, requests: Arc::new(Semaphore::new(requests)), max_requests: requests }
    }

    /// Why a request was refused with `BodyError::Busy`, for its answer.
    pub fn busy(&self) -> String {
        format!("the agent is reading as much as it reads at once ({} requests, {} MiB of bodies); retry later", self.max_requests, self.bytes >> 20)
    }

    /// Makes `held` cover `bytes` in all.
    fn reserve(&self, held: &mut Held, bytes: usize) -> Result<(), BodyError> {
        let more = bytes.div_ceil(UNIT).saturating_sub(held.units);
        if more == 0 {
            return Ok(());
        }
        let units = u32::try_from(more).map_err(|_| BodyError::Busy)?;
        let permit = self.room.clone().try_acquire_many_owned(units).map_err(|_| BodyError::Busy)?;
        match &mut held.permit {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        held.units += more;
        Ok(())
    }

    /// Reads `body` (declaring `declared` bytes, if it did) up to `limit` bytes, within the budget
    /// and `BODY_TIMEOUT`. The bytes come with the room they hold.
    pub async fn read(&self, mut body: Incoming, declared: Option<u64>, limit: usize) -> Result<(Bytes, Held), BodyError> {
        // Too large is said first: sending it again later would not help.
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(BodyError::TooLarge);
        }
        let request = self.requests.clone().try_acquire_owned().map_err(|_| BodyError::Busy)?;
        let mut held = Held { _request: Some(request), ..Held::default() };
        if let Some(n) = declared {
            self.reserve(&mut held, n as usize)?;
        }
        let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
        // A body that comes in one frame (most do) is kept as it came, without a copy.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyError::Slow),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue }; // trailers
            let total = first.as_ref().map_or(0, Bytes::len) + buf.len() + data.len();
            if total > limit || declared.is_some_and(|n| total as u64 > n) {
                return Err(BodyError::TooLarge);
            }
            self.reserve(&mut held, total)?;
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                None => buf.extend_from_slice(&data),
                Some(one) => {
                    buf.reserve(declared.map_or(total, |n| n as usize));
                    buf.extend_from_slice(&one);
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok((first.unwrap_or_else(|| buf.freeze()), held))
    }
}
