//! Every relay setting, layered (flag > `AGENT_*` > file > default) and validated once, before
//! anything starts. The OTLP upstreams themselves are read later, from the environment the app
//! would get (secrets included), by `otlp::Settings::upstreams`.

use std::time::Duration;

use super::otlp;
use super::xray::from_otlp::Indexed;
use super::xray::{XraySettings, DEFAULT_ADDRESS};
use crate::cli::RunArgs;
use crate::config::{layered, parse_address, parse_duration, parse_positive_duration, parse_role_arn, parse_size, ConfigError, FileConfig, Key};

pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_BUFFER: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// `None` with `--no-xray`.
    pub xray: Option<XraySettings>,
    /// `None` with `--no-otlp`.
    pub otlp: Option<otlp::Settings>,
    /// `--xray-to-otlp`: X-Ray segments go to the OTLP upstreams as spans.
    pub xray_to_otlp: bool,
    /// `--otlp-xray-segments`: the app's OTLP spans go to X-Ray as segment documents.
    pub otlp_xray_segments: bool,
    /// `--xray-indexed-attributes`: the span attributes that become annotations.
    pub xray_indexed: Indexed,
    /// `--role-arn` for the trace calls; the proxy is set by the plan (the secrets' settings
    /// read it).
    pub aws: crate::aws::Access,
    /// How long the final flush may take, for every sink at once.
    pub flush_timeout: Duration,
    /// `--keep-health-spans`: relay the agent's own health probe's spans and segments too.
    pub keep_health_spans: bool,
}

pub fn config(args: &RunArgs, file: &FileConfig) -> Result<RelaySettings, ConfigError> {
    let xray_to_otlp = args.xray_to_otlp || file.xray_to_otlp.unwrap_or(false);
    let otlp = otlp::settings::config(args, file)?;
    if xray_to_otlp && otlp.is_none() {
        return Err(Key::run("xray-to-otlp").error(args.xray_to_otlp, "needs the OTLP relay, which --no-otlp turns off"));
    }
    let otlp_xray_segments = args.otlp_xray_segments || file.otlp_xray_segments.unwrap_or(false);
    if otlp_xray_segments && otlp.is_none() {
        return Err(Key::run("otlp-xray-segments").error(args.otlp_xray_segments, "needs the OTLP relay, which --no-otlp turns off"));
    }
    if otlp_xray_segments && xray_to_otlp {
        return Err(Key::run("otlp-xray-segments")
            .error(args.otlp_xray_segments, "cannot go with --xray-to-otlp, which sends traces the opposite way (X-Ray segments to OTLP); use one"));
    }
    let indexed = if args.xray_indexed_attributes.is_empty() {
        file.xray_indexed_attributes.clone().unwrap_or_default()
    } else {
        args.xray_indexed_attributes.clone()
    };
    Ok(RelaySettings {
        xray: xray(args, file)?,
        otlp,
        xray_to_otlp,
        otlp_xray_segments,
        xray_indexed: Indexed::parse(&indexed),
        aws: crate::aws::Access {
            proxy: Default::default(),
            role_arn: layered(Key::run("role-arn"), args.role_arn.as_ref(), file.role_arn.as_ref(), parse_role_arn)?,
        },
        keep_health_spans: args.keep_health_spans || file.keep_health_spans.unwrap_or(false),
        flush_timeout: layered(Key::run("flush-timeout"), args.flush_timeout.as_ref(), file.flush_timeout.as_ref(), parse_duration)?
            .unwrap_or(DEFAULT_FLUSH_TIMEOUT),
    })
}

fn xray(args: &RunArgs, file: &FileConfig) -> Result<Option<XraySettings>, ConfigError> {
    if args.no_xray || file.no_xray.unwrap_or(false) {
        return Ok(None);
    }
    let address = layered(Key::run("xray-address"), args.xray_address.as_ref(), file.xray_address.as_ref(), parse_address)?;
    Ok(Some(XraySettings {
        address_set: address.is_some_and(|a| a.to_string() != DEFAULT_ADDRESS),
        address: address.unwrap_or_else(|| DEFAULT_ADDRESS.parse().expect("valid default")),
        flush_interval: layered(
            Key::run("xray-flush-interval"),
            args.xray_flush_interval.as_ref(),
            file.xray_flush_interval.as_ref(),
            parse_positive_duration,
        )?
        .unwrap_or(Duration::from_secs(1)),
        buffer: layered(Key::run("xray-buffer"), args.xray_buffer.as_ref(), file.xray_buffer.as_ref(), parse_size)?.unwrap_or(DEFAULT_BUFFER),
        rcvbuf: layered(Key::run("xray-rcvbuf"), args.xray_rcvbuf.as_ref(), file.xray_rcvbuf.as_ref(), parse_size)?.unwrap_or(DEFAULT_BUFFER),
    }))
}
