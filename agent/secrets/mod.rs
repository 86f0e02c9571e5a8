//! Secrets: SSM parameters and Secrets Manager secrets into the child's environment, before it
//! starts — the job ECS does with the execution role, done by the agent with the task role,
//! with better errors and things ECS cannot do (paths, dotenv for local runs).
//!
//! Fail closed: if any required entry is missing, denied or cannot be decrypted, the child is
//! never started, and ONE message lists every failing name with its reason and a hint. No value
//! is ever printed: values are `SecretValue`s, which do not format.
//!
//! Precedence among sources: `--secret`/`--secrets-file` > `--ssm-path` > `--env-file`.

mod aws;
pub mod files;
mod reach;
pub mod reference;
pub mod refresh;
mod secretsmanager;
pub mod settings;
pub mod sources;
mod ssm;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::task::JoinSet;

use self::aws::{Kind, Reason};
use self::reference::Reference;
use self::secretsmanager::SecretKey;
pub use self::settings::SecretsConfig;
use self::sources::{valid_env_name, Entry, Sources};
use self::ssm::Fetched;
pub use self::value::SecretValue;

/// Requests in flight at once: enough to overlap round trips, few enough to stay clear of
/// SSM's shared 40 TPS when a fleet starts together.
const CONCURRENCY: usize = 4;

/// One variable for the child.
#[derive(Debug, Clone)]
pub struct Var {
    pub name: String,
    pub value: SecretValue,
    /// Where it came from, without the value: `ssm:/a/b`, `secretsmanager:db#password`, `env-file:.env`.
    pub source: String,
    pub version: String,
}

/// Everything resolved, sorted by name.
#[derive(Debug, Default)]
pub struct Resolved {
    pub vars: Vec<Var>,
}

/// One entry that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub what: String,
    pub reason: String,
    pub hint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{}", describe(.0))]
    Failed(Vec<Failure>),
    #[error("no AWS region for {0}: set AWS_REGION (ECS sets it for you), or use full ARNs")]
    NoRegion(String),
    #[error(
        "cannot load secrets, so the app was not started: cannot connect to {} ({}) for {}: {error} — check the URL, and the network: \
         a VPC endpoint or NAT gateway, and the security group's egress",
        endpoint.url, endpoint.chosen, humantime::format_duration(*after)
    )]
    Unreachable { endpoint: reach::Endpoint, error: String, after: Duration },
    #[error("cannot load secrets, so the app was not started: HTTPS to {} ({}) cannot be trusted: {error}: {}", endpoint.url, endpoint.chosen, crate::aws::certificate_hint())]
    Untrusted { endpoint: reach::Endpoint, error: String },
    #[error(transparent)]
    Source(#[from] sources::SourceError),
}

fn describe(failures: &[Failure]) -> String {
    let n = failures.len();
    let list: Vec<String> = failures
        .iter()
        .map(|f| format!("{} ({}): {}{}", f.name, f.what, f.reason, if f.hint.is_empty() { String::new() } else { format!(" — {}", f.hint) }))
        .collect();
    format!("cannot load {n} secret{}, so the app was not started: {}", if n == 1 { "" } else { "s" }, list.join("; "))
}

fn hint(kind: Kind, reference: &str, region: &str, action: &str, resource: &str) -> String {
    match kind {
        Kind::Denied => format!("the task role (not the execution role: the agent fetches at run time) needs {action} on {resource}"),
        Kind::Kms => "the task role needs kms:Decrypt on the KMS key that encrypts it".to_string(),
        Kind::NotFound => format!("check the exact name {reference} and that it exists in region {region}"),
        Kind::Timeout => {
            "check the endpoint and network (VPC endpoint or NAT), or raise --secrets-timeout; add --start-jitter when many tasks start at once"
                .into()
        }
        Kind::NoCredentials => {
            "on ECS give the task a task role (taskRoleArn: the agent fetches at run time with the task role, not the execution role); \
             on a laptop set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .into()
        }
        Kind::Unreachable => {
            let e = reach::Endpoint::of(action.split(':').next().unwrap_or_default(), region);
            format!("check {} ({}) and the network: a VPC endpoint or NAT gateway, and the security group's egress", e.url, e.chosen)
        }
        Kind::Untrusted => crate::aws::certificate_hint(),
        Kind::Other => String::new(),
    }
}

fn ssm_arn(region: &str, name: &str) -> String {
    let name = ssm::base_name(name);
    if name.starts_with("arn:") {
        return name.to_string();
    }
    format!("arn:aws:ssm:{region}:*:parameter{}{}", if name.starts_with('/') { "" } else { "/" }, name)
}

/// Resolves every source. `total` bounds everything that talks to AWS.
pub async fn resolve(sources: &Sources, total: Duration, unreachable_after: Duration, access: &crate::aws::Access) -> Result<Resolved, SecretsError> {
    let mut vars: BTreeMap<String, Var> = BTreeMap::new();

    // The task definition's plain `environment` first: everything else overrides it.
    for (name, value, source) in &sources.environment {
        vars.insert(name.clone(), Var { name: name.clone(), value: value.clone(), source: source.clone(), version: "-".into() });
    }
    for file in &sources.env_files {
        for (name, value) in sources::read_env_file(file)? {
            let source = format!("env-file:{}", file.display());
            vars.insert(name.clone(), Var { name, value, source, version: "-".into() });
        }
    }
    if !sources.needs_aws() {
        return Ok(Resolved { vars: vars.into_values().collect() });
    }

    let deadline = tokio::time::Instant::now() + total;
    let base = aws::load(total, access).await;
    let default_region = base.region().map(|r| r.to_string());
    let region_of = |r: &Option<String>, what: &str| -> Result<String, SecretsError> {
        r.clone().or_else(|| default_region.clone()).ok_or_else(|| SecretsError::NoRegion(what.to_string()))
    };

    let mut failures: Vec<Failure> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();

    // Plan the requests: distinct SSM names per region, distinct secret versions.
    let mut ssm_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut secrets: Vec<SecretKey> = Vec::new();
    for e in &sources.explicit {
        match &e.reference {
            Reference::Ssm { name, region } => {
                let r = region_of(region, &e.name)?;
                let list = ssm_names.entry(r).or_default();
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
            Reference::SecretsManager { secret_id, region, version_stage, version_id, .. } => {
                let key = SecretKey {
                    region: region_of(region, &e.name)?,
                    secret_id: secret_id.clone(),
                    version_stage: version_stage.clone(),
                    version_id: version_id.clone(),
                };
                if !secrets.contains(&key) {
                    secrets.push(key);
                }
            }
        }
    }
    let path_region = if sources.paths.is_empty() { None } else { Some(region_of(&None, "--ssm-path")?) };

    // Fetch everything concurrently, a few requests at a time, all under one deadline.
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    for (region, names) in &ssm_names {
        let client = aws::ssm(&base, region);
        for chunk in ssm::chunks(names) {
            let (client, sem, region) = (client.clone(), sem.clone(), region.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let fetch = async { Ok(ssm::get_parameters(&client, &chunk, &region).await) };
                match aws::within(deadline, total, fetch).await {
                    Ok(map) => Outcome::Params(region, map),
                    Err(reason) => Outcome::Params(region, chunk.into_iter().map(|n| (n, Err(reason.clone()))).collect()),
                }
            });
        }
    }
    for key in &secrets {
        let (client, sem, key) = (aws::secrets_manager(&base, &key.region), sem.clone(), key.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = aws::within(deadline, total, secretsmanager::get_secret(&client, &key)).await;
            Outcome::Secret(key, r)
        });
    }
    if let Some(region) = &path_region {
        let client = aws::ssm(&base, region);
        for p in &sources.paths {
            let (client, sem, path) = (client.clone(), sem.clone(), p.path.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let r = aws::within(deadline, total, ssm::get_by_path(&client, &path)).await;
                Outcome::Path(path, r)
            });
        }
    }
    let mut params: HashMap<(String, String), Result<Fetched, Reason>> = HashMap::new();
    let mut secret_values: HashMap<SecretKey, Result<Fetched, Reason>> = HashMap::new();
    let mut path_results: HashMap<String, Result<Vec<(String, Fetched)>, Reason>> = HashMap::new();
    // Every endpoint the fetches use, watched for one that takes no connection at all (behind
    // a proxy: the proxy) and, without system roots (the built-in ones are used), for a
    // certificate they do not cover, said at once rather than as a timeout.
    let mut used: Vec<reach::Endpoint> = Vec::new();
    let services = ssm_names.keys().map(|r| ("ssm", r.as_str())).chain(path_region.iter().map(|r| ("ssm", r.as_str())));
    for (service, region) in services.chain(secrets.iter().map(|k| ("secretsmanager", k.region.as_str()))) {
        let e = reach::Endpoint::of(service, region);
        if !used.contains(&e) {
            used.push(e);
        }
    }
    let https = if crate::aws::system_roots() == 0 { used.clone() } else { Vec::new() };
    let endpoints: Vec<reach::Endpoint> = used.into_iter().map(|e| e.through(&access.proxy)).collect();
    let untrusted = reach::first_untrusted(https, access.proxy.clone());
    tokio::pin!(untrusted);
    let unreachable = reach::first_unreachable(endpoints, unreachable_after);
    tokio::pin!(unreachable);
    loop {
        let done = tokio::select! {
            done = tasks.join_next() => match done {
                Some(d) => d,
                None => break,
            },
            (endpoint, error) = &mut unreachable => {
                tasks.abort_all();
                return Err(SecretsError::Unreachable { endpoint, error, after: unreachable_after });
            }
            (endpoint, error) = &mut untrusted => {
                tasks.abort_all();
                return Err(SecretsError::Untrusted { endpoint, error });
            }
        };
        match done.expect("BUG: a secrets task panicked") {
            Outcome::Params(region, map) => params.extend(map.into_iter().map(|(n, r)| ((region.clone(), n), r))),
            Outcome::Secret(key, r) => {
                secret_values.insert(key, r);
            }
            Outcome::Path(path, r) => {
                path_results.insert(path, r);
            }
        }
    }

    // Paths: every parameter under the path, named by its last segment.
    let explicit_names: Vec<&str> = sources.explicit.iter().map(|e| e.name.as_str()).collect();
    let mut from_paths: BTreeMap<String, (String, Fetched)> = BTreeMap::new();
    for p in &sources.paths {
        let region = path_region.as_deref().unwrap_or_default();
        match path_results.remove(&p.path).expect("every path was fetched") {
            Ok(list) if list.is_empty() && !p.optional => failures.push(Failure {
                name: format!("--ssm-path {}", p.path),
                what: format!("ssm:{}", p.path),
                reason: format!("no parameters under {} in {region}", p.path),
                hint: "check the path and region, or end it with ? to allow an empty path".into(),
            }),
            Ok(list) if list.is_empty() => warnings.push(format!("--ssm-path {} is optional and has no parameters in {region}", p.path)),
            Ok(list) => {
                for (full, fetched) in list {
                    let name = full.rsplit('/').next().unwrap_or(&full).to_string();
                    if explicit_names.contains(&name.as_str()) {
                        continue; // an explicit --secret of the same name wins
                    }
                    if !valid_env_name(&name) {
                        failures.push(Failure {
                            name: full.clone(),
                            what: format!("--ssm-path {}", p.path),
                            reason: format!("its last segment {name:?} is not a valid environment variable name"),
                            hint: format!("rename the parameter, or load it with --secret SOME_NAME={full}"),
                        });
                        continue;
                    }
                    if let Some((other, _)) = from_paths.get(&name) {
                        if *other == full {
                            continue; // the same parameter, under two overlapping paths
                        }
                        failures.push(Failure {
                            name: name.clone(),
                            what: format!("ssm:{full}"),
                            reason: format!("both {other} and {full} would set {name}"),
                            hint: format!("load one of them explicitly with --secret {name}=..."),
                        });
                        continue;
                    }
                    from_paths.insert(name, (full, fetched));
                }
            }
            Err(reason) => failures.push(Failure {
                name: format!("--ssm-path {}", p.path),
                what: format!("ssm:{}", p.path),
                hint: hint(reason.kind, &p.path, region, "ssm:GetParametersByPath", &format!("{}*", ssm_arn(region, &p.path))),
                reason: reason.message,
            }),
        }
    }
    for (name, (full, f)) in from_paths {
        vars.insert(name.clone(), Var { name, value: f.value, source: format!("ssm:{full}"), version: f.version });
    }

    // Explicit entries.
    for e in &sources.explicit {
        let got: Result<Fetched, (Reason, String, String, String)> = match &e.reference {
            Reference::Ssm { name, region } => {
                let r = region_of(region, &e.name)?;
                params
                    .get(&(r.clone(), name.clone()))
                    .cloned()
                    .expect("every name was fetched")
                    .map_err(|reason| (reason, r.clone(), "ssm:GetParameters".into(), ssm_arn(&r, name)))
            }
            Reference::SecretsManager { secret_id, region, json_key, version_stage, version_id } => {
                let key = SecretKey {
                    region: region_of(region, &e.name)?,
                    secret_id: secret_id.clone(),
                    version_stage: version_stage.clone(),
                    version_id: version_id.clone(),
                };
                let ctx = |reason| (reason, key.region.clone(), "secretsmanager:GetSecretValue".to_string(), secret_id.clone());
                match secret_values.get(&key).cloned().expect("every secret was fetched") {
                    Ok(f) => match json_key {
                        Some(k) => secretsmanager::json_key(&f.value, k).map(|value| Fetched { value, version: f.version }).map_err(ctx),
                        None => Ok(f),
                    },
                    Err(reason) => Err(ctx(reason)),
                }
            }
        };
        match got {
            Ok(f) => {
                vars.insert(e.name.clone(), Var { name: e.name.clone(), value: f.value, source: e.reference.to_string(), version: f.version });
            }
            Err((reason, _, _, _)) if e.optional && reason.kind == Kind::NotFound => {
                warnings.push(format!("{} ({}) is optional and was not found; left unset: {}", e.name, e.reference, reason.message));
            }
            Err((reason, region, action, resource)) => failures.push(failure(e, reason, &region, &action, &resource)),
        }
    }

    for w in &warnings {
        tracing::warn!("{w}");
    }
    if !failures.is_empty() {
        return Err(SecretsError::Failed(failures));
    }
    Ok(Resolved { vars: vars.into_values().collect() })
}

/// The child's variables from the resolved secrets, honouring `--no-override`, with one info
/// line naming (never showing) what was loaded and what replaced or kept an inherited variable.
pub fn child_env(resolved: &Resolved, no_override: bool) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env = Vec::new();
    let (mut overridden, mut kept) = (Vec::new(), Vec::new());
    let names: Vec<&str> = resolved.vars.iter().map(|v| v.name.as_str()).collect();
    tracing::info!(count = names.len(), names = %names.join(","), "loaded secrets");
    for var in &resolved.vars {
        if std::env::var_os(&var.name).is_some() {
            if no_override {
                kept.push(var.name.clone());
                continue;
            }
            overridden.push(var.name.clone());
        }
        env.push((var.name.clone().into(), var.value.expose().into()));
    }
    if !overridden.is_empty() {
        tracing::info!(names = %overridden.join(","), "secrets override inherited variables of the same name");
    }
    if !kept.is_empty() {
        tracing::info!(names = %kept.join(","), "--no-override: inherited variables kept over secrets of the same name");
    }
    env
}

fn failure(e: &Entry, reason: Reason, region: &str, action: &str, resource: &str) -> Failure {
    Failure {
        name: e.name.clone(),
        what: e.reference.to_string(),
        hint: hint(reason.kind, &e.reference.to_string(), region, action, resource),
        reason: reason.message,
    }
}

enum Outcome {
    Params(String, HashMap<String, Result<Fetched, Reason>>),
    Secret(SecretKey, Result<Fetched, Reason>),
    Path(String, Result<Vec<(String, Fetched)>, Reason>),
}
