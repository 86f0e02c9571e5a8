//! Secrets Manager: GetSecretValue per distinct (secret, version) asked for, then ECS's
//! `json-key` picked out of the secret's JSON.
//!
//! GetSecretValue rather than BatchGetSecretValue: a task names a handful of secrets, each may
//! carry its own version stage or id (which the batch call cannot take), and requests run
//! concurrently anyway.

use aws_sdk_secretsmanager::Client;

use super::aws::{Kind, Reason};
use super::ssm::Fetched;
use super::SecretValue;

/// One distinct secret version to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey {
    pub region: String,
    pub secret_id: String,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

pub async fn get_secret(client: &Client, key: &SecretKey) -> Result<Fetched, Reason> {
    let resp = client
        .get_secret_value()
        .secret_id(&key.secret_id)
        .set_version_stage(key.version_stage.clone())
        .set_version_id(key.version_id.clone())
        .send()
        .await
        .map_err(|e| Reason::from_sdk(&e))?;
    let value = match (resp.secret_string(), resp.secret_binary()) {
        (Some(s), _) => s.to_string(),
        (None, Some(b)) => String::from_utf8(b.as_ref().to_vec())
            .map_err(|_| Reason::new(Kind::Other, "the secret is binary and not UTF-8, so it cannot be an environment variable"))?,
        (None, None) => return Err(Reason::new(Kind::Other, "the secret has no value")),
    };
    Ok(Fetched { value: SecretValue::new(value), version: resp.version_id().unwrap_or("-").to_string() })
}

/// ECS's json-key: the key's value as text (strings as they are, other JSON as JSON).
pub fn json_key(secret: &SecretValue, key: &str) -> Result<SecretValue, Reason> {
    let json: serde_json::Value = serde_json::from_str(secret.expose())
        .map_err(|_| Reason::new(Kind::NotFound, format!("the secret is not JSON, so it has no key {key:?}")))?;
    let obj = json.as_object().ok_or_else(|| Reason::new(Kind::NotFound, format!("the secret is not a JSON object, so it has no key {key:?}")))?;
    match obj.get(key) {
        Some(serde_json::Value::String(s)) => Ok(SecretValue::new(s.clone())),
        Some(other) => Ok(SecretValue::new(other.to_string())),
        None => {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            Err(Reason::new(Kind::NotFound, format!("the secret has no key {key:?} (its keys: {})", keys.join(", "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys() {
        let s = SecretValue::new(r#"{"username":"app","password":"p=\"q\"","port":5432,"empty":""}"#);
        assert_eq!(json_key(&s, "username").unwrap().expose(), "app");
        assert_eq!(json_key(&s, "password").unwrap().expose(), "p=\"q\"");
        assert_eq!(json_key(&s, "port").unwrap().expose(), "5432");
        assert_eq!(json_key(&s, "empty").unwrap().expose(), "");
        let e = json_key(&s, "host").unwrap_err();
        assert_eq!(e.message, "the secret has no key \"host\" (its keys: empty, password, port, username)");
        assert!(json_key(&SecretValue::new("plain"), "k").is_err());
    }
}
