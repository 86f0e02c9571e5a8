//! The X-Ray daemon's other job: a TCP endpoint on the same address, where the SDKs ask for
//! centralized sampling rules (`POST /GetSamplingRules`) and report their statistics
//! (`POST /SamplingTargets`). The agent answers with the real X-Ray calls, made through the AWS
//! SDK (so SigV4-signed with the task role's credentials). Unlike the daemon, it never forwards a
//! request unsigned: without credentials it answers 503 and says why. Anything else is 404.

use std::convert::Infallible;
use std::net::SocketAddr;

use aws_sdk_xray::config::ProvideCredentials;
use aws_sdk_xray::primitives::DateTime;
use aws_sdk_xray::types::SamplingStatisticsDocument;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::aws::Shared;
use crate::relay::serve::{self, Reply};

/// The largest request body taken: sampling requests are a few KB (a statistics document per
/// rule); anything larger is refused with 413 before it is read.
pub const MAX_BODY: usize = 256 << 10;

/// Serves until `cancel`. The listener is bound by the caller, so a taken port is its error.
pub async fn serve(listener: tokio::net::TcpListener, cancel: CancellationToken, upstream: Shared) {
    serve::serve("X-Ray sampling", listener, cancel, move |req| handle(req, upstream.clone())).await
}

pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    serve::bind(address)
}

fn reply(status: StatusCode, body: Value) -> Result<Reply, Infallible> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().expect("valid header"));
    Ok(r)
}

async fn handle(req: Request<Incoming>, upstream: Shared) -> Result<Reply, Infallible> {
    let op = match (req.method(), req.uri().path()) {
        (&Method::POST, "/GetSamplingRules") => Op::Rules,
        (&Method::POST, "/SamplingTargets") => Op::Targets,
        (m, p) => {
            debug!(method = %m, path = p, "sampling proxy: not found");
            return reply(StatusCode::NOT_FOUND, json!({"message": "the agent proxies only POST /GetSamplingRules and POST /SamplingTargets"}));
        }
    };
    let too_large = || {
        reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"message": format!("the body is over {} KiB; sampling requests are a few KB", MAX_BODY >> 10)}))
    };
    if serve::declared_length(&req).is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"message": "cannot read the request body"})),
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"message": format!("the body is not JSON: {e}")})),
        }
    };
    let cfg = upstream.get().await;
    // Never forward unsigned: no credentials, no call.
    let creds = match cfg.credentials_provider() {
        Some(p) => p.provide_credentials().await.map_err(|e| e.to_string()),
        None => Err("no credentials provider".into()),
    };
    if let Err(e) = creds {
        warn!("sampling proxy: no AWS credentials, answering 503: {e}");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": format!("the agent has no AWS credentials, so it cannot sign sampling requests to X-Ray (it never forwards them unsigned): {e}")}),
        );
    }
    let client = aws_sdk_xray::Client::new(cfg);
    let out = match op {
        Op::Rules => rules(&client, &input).await,
        Op::Targets => targets(&client, &input).await,
    };
    match out {
        Ok(v) => reply(StatusCode::OK, v),
        Err((status, message)) => reply(status, json!({"message": message})),
    }
}

enum Op {
    Rules,
    Targets,
}

fn secs(t: Option<&DateTime>) -> Value {
    t.map_or(Value::Null, |t| json!(t.as_secs_f64()))
}

fn upstream_error<E>(e: aws_sdk_xray::error::SdkError<E>) -> (StatusCode, String)
where
    E: std::error::Error + 'static,
{
    let status = match &e {
        aws_sdk_xray::error::SdkError::ServiceError(se) => StatusCode::from_u16(se.raw().status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, format!("X-Ray: {}", aws_sdk_xray::error::DisplayErrorContext(&e)))
}

async fn rules(client: &aws_sdk_xray::Client, input: &Value) -> Result<Value, (StatusCode, String)> {
    let token = input.get("NextToken").and_then(Value::as_str).map(str::to_string);
    let out = client.get_sampling_rules().set_next_token(token).send().await.map_err(upstream_error)?;
    let records: Vec<Value> = out
        .sampling_rule_records()
        .iter()
        .map(|r| {
            let rule = r.sampling_rule().map(|s| {
                json!({
                    "RuleName": s.rule_name(), "RuleARN": s.rule_arn(), "ResourceARN": s.resource_arn(),
                    "Priority": s.priority(), "FixedRate": s.fixed_rate(), "ReservoirSize": s.reservoir_size(),
                    "ServiceName": s.service_name(), "ServiceType": s.service_type(), "Host": s.host(),
                    "HTTPMethod": s.http_method(), "URLPath": s.url_path(), "Version": s.version(),
                    "Attributes": s.attributes(),
                })
            });
            json!({"SamplingRule": rule, "CreatedAt": secs(r.created_at()), "ModifiedAt": secs(r.modified_at())})
        })
        .collect();
    Ok(json!({"SamplingRuleRecords": records, "NextToken": out.next_token()}))
}

async fn targets(client: &aws_sdk_xray::Client, input: &Value) -> Result<Value, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    let docs = input.get("SamplingStatisticsDocuments").and_then(Value::as_array).ok_or_else(|| bad("SamplingStatisticsDocuments is missing"))?;
    let mut stats = Vec::new();
    for d in docs {
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| d.get(k).and_then(Value::as_i64).map(|x| x as i32);
        let doc = SamplingStatisticsDocument::builder()
            .set_rule_name(s("RuleName"))
            .set_client_id(s("ClientID"))
            .set_timestamp(d.get("Timestamp").and_then(Value::as_f64).map(DateTime::from_secs_f64))
            .set_request_count(n("RequestCount"))
            .set_sampled_count(n("SampledCount"))
            .set_borrow_count(n("BorrowCount"))
            .build()
            .map_err(|e| bad(&format!("a statistics document is incomplete: {e}")))?;
        stats.push(doc);
    }
    let out = client.get_sampling_targets().set_sampling_statistics_documents(Some(stats)).send().await.map_err(upstream_error)?;
    let targets: Vec<Value> = out
        .sampling_target_documents()
        .iter()
        .map(|t| {
            json!({"RuleName": t.rule_name(), "FixedRate": t.fixed_rate(), "ReservoirQuota": t.reservoir_quota(),
                   "ReservoirQuotaTTL": secs(t.reservoir_quota_ttl()), "Interval": t.interval()})
        })
        .collect();
    let unprocessed: Vec<Value> = out
        .unprocessed_statistics()
        .iter()
        .map(|u| json!({"RuleName": u.rule_name(), "ErrorCode": u.error_code(), "Message": u.message()}))
        .collect();
    Ok(json!({
        "SamplingTargetDocuments": targets,
        "LastRuleModification": secs(out.last_rule_modification()),
        "UnprocessedStatistics": unprocessed,
    }))
}
