//! Sending batches to X-Ray with PutTraceSegments.
//!
//! Unlike the daemon, which drops a batch on any API error, a batch that failed for a reason
//! that may pass (throttling, 5xx, timeouts, no connection) goes back to the front of the
//! buffer and is tried again after a jittered, growing pause; segments the API refuses for good
//! are counted as rejected and each kind of error is logged once, with its count at shutdown.

use std::time::Duration;

use aws_sdk_xray::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde::Deserialize;

use super::problems::Problems;

/// What one PutTraceSegments call came to.
pub enum Sent {
    /// All accepted, except these segments, which may be tried again, and `refused` for good.
    Done { retry: Vec<String>, refused: u64 },
    /// The call failed in a way that may pass: try the whole batch again later.
    RetryAll(String),
    /// The call failed for good: the batch is lost.
    Failed(String),
}

pub struct Exporter {
    client: aws_sdk_xray::Client,
    /// Each kind of problem is logged the first time only, and counted.
    pub problems: Problems,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

/// The AWS configuration for X-Ray calls (PutTraceSegments and the sampling proxy): two
/// attempts of at most 5 s each (the exporter adds its own retries on top). Loaded once, on first
/// use, and shared.
pub type SharedConfig = std::sync::Arc<tokio::sync::OnceCell<aws_config::SdkConfig>>;

pub async fn sdk_config(shared: &SharedConfig) -> &aws_config::SdkConfig {
    shared
        .get_or_init(|| crate::aws::config(aws_config::retry::RetryConfig::standard().with_max_attempts(2), Duration::from_secs(5)))
        .await
}

impl Exporter {
    pub async fn new(shared: &SharedConfig) -> Self {
        Exporter { client: aws_sdk_xray::Client::new(sdk_config(shared).await), problems: Problems::default() }
    }

    pub async fn send(&mut self, batch: &[String]) -> Sent {
        match self.client.put_trace_segments().set_trace_segment_documents(Some(batch.to_vec())).send().await {
            Ok(out) => {
                let mut retry = Vec::new();
                let mut refused = 0;
                for u in out.unprocessed_trace_segments() {
                    let code = u.error_code().unwrap_or("unknown").to_string();
                    let transient = code.contains("Throttl") || code.starts_with('5');
                    let doc = u.id().and_then(|id| {
                        batch.iter().find(|d| serde_json::from_str::<IdOnly>(d).ok().and_then(|x| x.id).as_deref() == Some(id))
                    });
                    match (transient, doc) {
                        (true, Some(d)) => retry.push(d.clone()),
                        _ => {
                            refused += 1;
                            let msg = u.message().unwrap_or("").to_string();
                            self.problems.once(&format!("unprocessed:{code}"), || {
                                format!("X-Ray refused a segment: {code}: {msg} (further ones are counted as rejected)")
                            });
                        }
                    }
                }
                Sent::Done { retry, refused }
            }
            Err(e) => {
                let transient = match &e {
                    SdkError::ServiceError(se) => {
                        let code = se.err().code().unwrap_or("");
                        code.contains("Throttl") || se.raw().status().is_server_error()
                    }
                    SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
                    _ => false,
                };
                let text = format!("{}", DisplayErrorContext(&e));
                if transient { Sent::RetryAll(text) } else { Sent::Failed(text) }
            }
        }
    }
}
