//! SSM Parameter Store: GetParameters for named parameters, GetParametersByPath for paths.
//!
//! GetParameters takes at most 10 names (more is a ValidationException, the mistake ssm-parent
//! made), so names go in chunks of 10, and never two selectors of one parameter in the same
//! chunk: the answer names a parameter without its selector, so that is how answers are matched
//! to what was asked. GetParametersByPath pages with MaxResults 10 until there is no NextToken,
//! even through empty pages. Decryption is always on.

use std::collections::HashMap;

use aws_sdk_ssm::Client;

use super::aws::{Kind, Reason};
use super::SecretValue;

/// A value and its version.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub value: SecretValue,
    pub version: String,
}

/// The parameter name (or ARN) without a `:version`/`:label` selector.
pub fn base_name(name: &str) -> &str {
    // An ARN's own five colons come before its resource, `parameter/NAME[:selector]`.
    let skip = if name.starts_with("arn:") { name.match_indices(':').nth(4).map_or(0, |(i, _)| i + 1) } else { 0 };
    match name[skip..].find(':') {
        Some(i) => &name[..skip + i],
        None => name,
    }
}

/// Splits names into GetParameters calls: at most 10 each, one selector per parameter each.
pub fn chunks(names: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in names {
        let slot = out.iter().position(|c| c.len() < 10 && !c.iter().any(|m| base_name(m) == base_name(n)));
        match slot {
            Some(i) => out[i].push(n.clone()),
            None => out.push(vec![n.clone()]),
        }
    }
    out
}

/// One GetParameters call; every asked name gets a result. An AccessDenied for the batch is
/// not blamed on every name in it: each name is then asked alone, so the error lands on the
/// names it concerns and the others are read.
pub async fn get_parameters(client: &Client, names: &[String], region: &str) -> HashMap<String, Result<Fetched, Reason>> {
    let mut out = HashMap::new();
    match client.get_parameters().set_names(Some(names.to_vec())).with_decryption(true).send().await {
        Ok(resp) => {
            let mut by_base: HashMap<&str, Fetched> = HashMap::new();
            for p in resp.parameters() {
                let fetched = Fetched { value: SecretValue::new(p.value().unwrap_or_default()), version: p.version().to_string() };
                // Matched by name, or by ARN for names asked as ARNs.
                for key in [p.name(), p.arn()].into_iter().flatten() {
                    by_base.insert(base_name(key), fetched.clone());
                }
            }
            for n in names {
                let r = match by_base.get(base_name(n)) {
                    Some(f) => Ok(f.clone()),
                    // GetParameters takes ARNs (ECS sends them so); stand-ins that do not (moto)
                    // list them as invalid, and GetParameter still takes the ARN as given.
                    None if n.starts_with("arn:") => get_by_arn(client, n, region).await,
                    None => Err(Reason::new(Kind::NotFound, format!("parameter {n} not found in {region}"))),
                };
                out.insert(n.clone(), r);
            }
        }
        Err(e) => {
            let reason = Reason::from_sdk(&e);
            if reason.kind == Kind::Denied && names.len() > 1 {
                for n in names {
                    out.extend(Box::pin(get_parameters(client, std::slice::from_ref(n), region)).await);
                }
                return out;
            }
            for n in names {
                out.insert(n.clone(), Err(reason.clone()));
            }
        }
    }
    out
}

/// One parameter by ARN with GetParameter: asked only for an ARN GetParameters did not answer.
/// Any failure is "not found": the role may lack ssm:GetParameter, which ECS never needs.
async fn get_by_arn(client: &Client, arn: &str, region: &str) -> Result<Fetched, Reason> {
    match client.get_parameter().name(arn).with_decryption(true).send().await {
        Ok(resp) => {
            let p = resp.parameter().ok_or_else(|| Reason::new(Kind::NotFound, format!("parameter {arn} not found in {region}")))?;
            Ok(Fetched { value: SecretValue::new(p.value().unwrap_or_default()), version: p.version().to_string() })
        }
        Err(e) => {
            tracing::debug!(arn, error = %Reason::from_sdk(&e).message, "GetParameter by ARN");
            Err(Reason::new(Kind::NotFound, format!("parameter {arn} not found in {region} (or not shared with this account)")))
        }
    }
}

/// Every parameter under `path`, recursively: (full name, value).
pub async fn get_by_path(client: &Client, path: &str) -> Result<Vec<(String, Fetched)>, Reason> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .max_results(10)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| Reason::from_sdk(&e))?;
        for p in resp.parameters() {
            if let Some(name) = p.name() {
                let value = SecretValue::new(p.value().unwrap_or_default());
                out.push((name.to_string(), Fetched { value, version: p.version().to_string() }));
            }
        }
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_of_names_and_arns() {
        assert_eq!(base_name("/a/b:3"), "/a/b");
        assert_eq!(base_name("plain"), "plain");
        assert_eq!(base_name("arn:aws:ssm:us-east-1:1:parameter/a/b"), "arn:aws:ssm:us-east-1:1:parameter/a/b");
        assert_eq!(base_name("arn:aws-cn:ssm:cn-north-1:1:parameter/a:prod"), "arn:aws-cn:ssm:cn-north-1:1:parameter/a");
    }

    #[test]
    fn chunks_hold_ten_and_one_selector_per_parameter() {
        let names: Vec<String> = (0..25).map(|i| format!("/p/{i}")).chain(["/p/1:2".into(), "/p/1:prod".into()]).collect();
        let c = chunks(&names);
        assert!(c.iter().all(|c| c.len() <= 10));
        assert_eq!(c.iter().map(Vec::len).sum::<usize>(), 27);
        for chunk in &c {
            let ones = chunk.iter().filter(|n| base_name(n) == "/p/1").count();
            assert!(ones <= 1, "{chunk:?}");
        }
    }
}
