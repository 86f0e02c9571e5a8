//! The agent's own log lines: one line each, on stderr, as text or JSON.
//!
//! The child's stdout and stderr are inherited untouched; only the agent writes here.
//!
//! The AWS SDK's own events (targets `aws_*`: "failed to load region from IMDS" with a Debug
//! dump of the HTTP response, for one) appear only at `--log-level debug` and `trace`: at the
//! default level the agent says what went wrong itself, in one line.

use tracing::level_filters::LevelFilter;

use crate::cli::{LogFormat, LogLevel};

pub fn init(format: LogFormat, level: LogLevel) {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let sdk_shown = level >= LevelFilter::DEBUG;
    let quiet_sdk = tracing_subscriber::filter::filter_fn(move |meta| sdk_shown || !meta.target().starts_with("aws_"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false);
    // A failure here means a subscriber is already set (tests); keep that one.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).finish().with(quiet_sdk).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).finish().with(quiet_sdk).try_init(),
    };
}
