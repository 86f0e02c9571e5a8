//! Where the child's secrets come from, before anything is fetched.
//!
//! - `--secret NAME=VALUEFROM` (repeatable; `AGENT_SECRETS`, one per line or comma-separated);
//! - `--secrets-file FILE`: a container definition's `secrets` array, pasted verbatim;
//! - `--ssm-path PATH` (repeatable): every parameter under PATH, named by its last segment;
//! - `--env-file FILE`: dotenv, for local development with no AWS at all.
//!
//! A name ending in `?` (`SENTRY_DSN?=/x/y`, or `"optional": true` in the file, or a path
//! ending in `?`) is optional: when it is missing the variable is left unset with a warning.
//! Everything here is checked before any request is made, and every error names the entry.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::reference::Reference;

/// One named secret the child will get.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub reference: Reference,
    pub optional: bool,
    /// Where it was declared, for messages: `--secret` or the file's path.
    pub declared_in: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSource {
    pub path: String,
    pub optional: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub explicit: Vec<Entry>,
    pub paths: Vec<PathSource>,
    pub env_files: Vec<PathBuf>,
    /// The `environment` array of the --secrets-file container: (name, value, origin).
    pub environment: Vec<(String, super::SecretValue, String)>,
}

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.explicit.is_empty() && self.paths.is_empty() && self.env_files.is_empty() && self.environment.is_empty()
    }

    pub fn needs_aws(&self) -> bool {
        !self.explicit.is_empty() || !self.paths.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("{origin}: {entry:?} is not NAME=VALUEFROM (for example DB_PASSWORD=/app/db/password)")]
    Shape { origin: String, entry: String },
    #[error("{origin}: {name:?} is not a valid environment variable name (it must not be empty or hold = or NUL)")]
    BadName { origin: String, name: String },
    #[error("{origin}: {reference}")]
    Reference { origin: String, reference: super::reference::ReferenceError },
    #[error("{name} is declared twice: in {first} and in {second}")]
    Duplicate { name: String, first: String, second: String },
    #[error("secrets file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("--ssm-path {path:?}: a path starts with / (for example /cruddur/backend-flask)")]
    BadPath { path: String },
    #[error("--container names a container of the --secrets-file task definition; give --secrets-file too")]
    ContainerWithoutFile,
}

/// Any name Docker and ECS accept: not empty, no `=` and no NUL (`spring.datasource.password`
/// and `MY-VAR` included, though a shell cannot name them).
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// `NAME` or `NAME?` (optional).
fn name_and_optional(raw: &str) -> (String, bool) {
    let raw = raw.trim();
    match raw.strip_suffix('?') {
        Some(n) => (n.trim().to_string(), true),
        None => (raw.to_string(), false),
    }
}

fn entry(origin: &str, name: &str, value_from: &str, optional: bool) -> Result<Entry, SourceError> {
    if !valid_env_name(name) {
        return Err(SourceError::BadName { origin: origin.to_string(), name: name.to_string() });
    }
    let reference = value_from.parse().map_err(|reference| SourceError::Reference { origin: origin.to_string(), reference })?;
    Ok(Entry { name: name.to_string(), reference, optional, declared_in: origin.to_string() })
}

/// One `--secret NAME=VALUEFROM` (the variable `AGENT_SECRETS` may hold several per line).
pub fn parse_secret_flag(raw: &str) -> Result<Vec<Entry>, SourceError> {
    raw.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|item| {
            let (name, value_from) = item.split_once('=').ok_or_else(|| SourceError::Shape { origin: "--secret".into(), entry: item.to_string() })?;
            let (name, optional) = name_and_optional(name);
            entry("--secret", &name, value_from, optional)
        })
        .collect()
}

#[derive(Deserialize)]
struct EnvEntry {
    name: String,
    value: String,
}

/// What a --secrets-file gives: secrets to fetch, and (from a container definition) plain
/// environment variables.
pub struct Loaded {
    pub secrets: Vec<Entry>,
    pub environment: Vec<(String, super::SecretValue, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    #[serde(rename = "valueFrom")]
    value_from: String,
    #[serde(default)]
    optional: bool,
}

/// The container definition a task definition file means: `containerDefinitions` at the top
/// (register-task-definition input) or under `taskDefinition` (describe-task-definition output);
/// the one named `container`, or the only one. `None` when the JSON is not a task definition.
fn pick_container(json: &mut serde_json::Value, container: Option<&str>) -> Option<Result<(serde_json::Value, String), String>> {
    let defs = match json.get_mut("taskDefinition").filter(|t| t.is_object()) {
        Some(td) => td.get_mut("containerDefinitions")?,
        None => json.get_mut("containerDefinitions")?,
    };
    let Some(defs) = defs.as_array_mut() else {
        return Some(Err("containerDefinitions is not an array".into()));
    };
    let names: Vec<String> = defs.iter().map(|d| d.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_string()).collect();
    let index = match container {
        Some(want) => match names.iter().position(|n| n == want) {
            Some(i) => i,
            None => return Some(Err(format!("no container named {want:?} (its containers: {})", names.join(", ")))),
        },
        None if defs.len() == 1 => 0,
        None => {
            return Some(Err(format!("it defines {} containers ({}); choose one with --container NAME", defs.len(), names.join(", "))));
        }
    };
    Some(Ok((defs.swap_remove(index), names[index].clone())))
}

/// ECS JSON: a container definition's `secrets` array (`[{"name": "...", "valueFrom": "..."}]`),
/// a whole container definition (its `secrets` and `environment`), or a task definition in
/// either shape (the container chosen by `container`, or its only one).
pub fn load_secrets_file(path: &Path, container: Option<&str>) -> Result<Loaded, SourceError> {
    let file_err = |message: String| SourceError::File { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(format!("not JSON: {e}")))?;
    let mut origin = path.display().to_string();
    match pick_container(&mut json, container) {
        Some(Ok((def, name))) => {
            json = def;
            origin = format!("{origin} (container {name})");
        }
        Some(Err(message)) => return Err(file_err(message)),
        None if container.is_some() => {
            return Err(file_err("--container is given, but this is not a task definition (no containerDefinitions)".into()))
        }
        None => {}
    }
    let (array, environment) = match json {
        serde_json::Value::Object(mut o) if o.contains_key("secrets") || o.contains_key("environment") || o.contains_key("name") => {
            (o.remove("secrets").unwrap_or(serde_json::Value::Array(Vec::new())), o.remove("environment"))
        }
        other => (other, None),
    };
    let items: Vec<FileEntry> = serde_json::from_value(array)
        .map_err(|e| file_err(format!("expected the ECS secrets array [{{\"name\": ..., \"valueFrom\": ...}}]: {e}")))?;
    let env: Vec<EnvEntry> = match environment {
        // Not serde's words: they may quote a value, and an `environment` value can be a password.
        Some(e) => serde_json::from_value(e).map_err(|_| {
            file_err("expected the ECS environment array [{\"name\": \"...\", \"value\": \"...\"}], a string name and value each".into())
        })?,
        None => Vec::new(),
    };
    let secrets = items
        .into_iter()
        .map(|i| {
            let (name, optional) = name_and_optional(&i.name);
            entry(&origin, &name, &i.value_from, optional || i.optional)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut environment = Vec::new();
    for e in env {
        if !valid_env_name(&e.name) {
            return Err(SourceError::BadName { origin, name: e.name });
        }
        environment.push((e.name, super::SecretValue::new(e.value), format!("{origin} environment")));
    }
    Ok(Loaded { secrets, environment })
}

pub fn parse_path(raw: &str) -> Result<PathSource, SourceError> {
    let (path, optional) = name_and_optional(raw);
    if !path.starts_with('/') {
        return Err(SourceError::BadPath { path });
    }
    Ok(PathSource { path, optional })
}

/// Rejects a name declared twice among the explicit entries (ECS rejects that too).
pub fn check_duplicates(entries: &[Entry]) -> Result<(), SourceError> {
    for (i, a) in entries.iter().enumerate() {
        if let Some(b) = entries[i + 1..].iter().find(|b| b.name == a.name) {
            return Err(SourceError::Duplicate {
                name: a.name.clone(),
                first: format!("{} ({})", a.declared_in, a.reference),
                second: format!("{} ({})", b.declared_in, b.reference),
            });
        }
    }
    Ok(())
}

/// Reads a dotenv file: `NAME=value`, quotes, `export`, comments, as dotenvy reads them.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, super::SecretValue)>, SourceError> {
    let file_err = |message: String| SourceError::File { path: path.to_owned(), message };
    let iter = dotenvy::from_path_iter(path).map_err(|e| file_err(describe_dotenv(e)))?;
    let mut out = Vec::new();
    for item in iter {
        let (k, v) = item.map_err(|e| file_err(describe_dotenv(e)))?;
        if !valid_env_name(&k) {
            return Err(SourceError::BadName { origin: path.display().to_string(), name: k });
        }
        out.push((k, super::SecretValue::new(v)));
    }
    Ok(out)
}

/// dotenvy's parse errors quote the offending line, which may hold a value: keep only where.
fn describe_dotenv(e: dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("cannot parse it at character {index} (the line is not shown: it may hold a secret)"),
        dotenvy::Error::Io(io) => io.to_string(),
        other => {
            let _ = other;
            "cannot read it as a dotenv file".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags() {
        let e = parse_secret_flag("DB_PASSWORD=/app/db/password").unwrap();
        assert_eq!((e[0].name.as_str(), e[0].optional), ("DB_PASSWORD", false));
        let e = parse_secret_flag("SENTRY_DSN?=/app/sentry\nOTHER=/x").unwrap();
        assert_eq!((e[0].name.as_str(), e[0].optional, e.len()), ("SENTRY_DSN", true, 2));
        assert!(matches!(parse_secret_flag("NOEQUALS"), Err(SourceError::Shape { .. })));
        // Any name Docker takes, as ECS does; only an empty one (or a NUL) is refused.
        for name in ["spring.datasource.password", "MY-VAR", "1ST"] {
            assert_eq!(parse_secret_flag(&format!("{name}=/x")).unwrap()[0].name, name);
        }
        assert!(matches!(parse_secret_flag("=/x"), Err(SourceError::BadName { .. })));
        assert!(matches!(parse_secret_flag("A\0B=/x"), Err(SourceError::BadName { .. })));
        assert!(matches!(parse_secret_flag("OK=a:b:c"), Err(SourceError::Reference { .. })));
    }

    #[test]
    fn duplicates_are_named_with_both_places() {
        let mut e = parse_secret_flag("A=/x").unwrap();
        e.extend(parse_secret_flag("A=/y").unwrap());
        let err = check_duplicates(&e).unwrap_err().to_string();
        assert!(err.contains("A is declared twice") && err.contains("ssm:/x") && err.contains("ssm:/y"), "{err}");
    }

    #[test]
    fn env_file_errors_never_show_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, "GOOD=1\nBROKEN='hunter2\n").unwrap();
        let err = read_env_file(&p).unwrap_err().to_string();
        assert!(!err.contains("hunter2") && err.contains(".env"), "{err}");
    }
}
