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

/// The parameter name without a `:version`/`:label` selector.
pub fn base_name(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
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

/// One GetParameters call; every asked name gets a result.
pub async fn get_parameters(client: &Client, names: &[String], region: &str) -> HashMap<String, Result<Fetched, Reason>> {
    let mut out = HashMap::new();
    match client.get_parameters().set_names(Some(names.to_vec())).with_decryption(true).send().await {
        Ok(resp) => {
            let mut by_base: HashMap<&str, Fetched> = HashMap::new();
            for p in resp.parameters() {
                if let Some(name) = p.name() {
                    let value = SecretValue::new(p.value().unwrap_or_default());
                    by_base.insert(base_name(name), Fetched { value, version: p.version().to_string() });
                }
            }
            for n in names {
                let r = by_base.get(base_name(n)).cloned().ok_or_else(|| Reason::new(Kind::NotFound, format!("parameter {n} not found in {region}")));
                out.insert(n.clone(), r);
            }
        }
        Err(e) => {
            let reason = Reason::from_sdk(&e);
            for n in names {
                out.insert(n.clone(), Err(reason.clone()));
            }
        }
    }
    out
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
