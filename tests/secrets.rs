//! Secrets end to end against a real moto_server: every source, exact values in the child's
//! environment, failing closed with one message, faults through a fault-injecting proxy, a
//! fleet under a rate limit — and no seeded value ever in the agent's own output.

mod util;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use util::*;

const T: Duration = Duration::from_secs(90);

/// `agent run [args] -- sh -c 'env -0 > OUT'` against `endpoint`; returns the output and OUT.
fn run_child(endpoint: &str, args: &[&str], dir: &Path) -> (Output, std::path::PathBuf) {
    let out_file = dir.join("child-env");
    let mut c = agent_cmd();
    aws_env(&mut c, endpoint);
    c.arg("run").args(args).args(["--", "sh", "-c", &format!("env -0 > {}", out_file.display())]);
    (run(c, T), out_file)
}

fn all_output(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

fn secrets_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("secrets.json");
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret";
    let json = serde_json::json!([
        {"name": "MULTILINE", "valueFrom": "/test/special/MULTILINE"},
        {"name": "UNICODE", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/test/special/UNICODE"},
        {"name": "EQUALS", "valueFrom": "/test/special/EQUALS"},
        {"name": "QUOTES", "valueFrom": "/test/special/QUOTES"},
        {"name": "ADVANCED_8K", "valueFrom": "/test/special/ADVANCED_8K"},
        {"name": "VERSIONED_LATEST", "valueFrom": "/test/versioned"},
        {"name": "VERSIONED_V1", "valueFrom": "/test/versioned:1"},
        {"name": "VERSIONED_PROD", "valueFrom": "/test/versioned:prod"},
        {"name": "DB_USERNAME", "valueFrom": format!("{arn}:flask-api/database:username::")},
        {"name": "DB_PASSWORD", "valueFrom": format!("{arn}:flask-api/database:password::")},
        {"name": "DB_PORT", "valueFrom": "secretsmanager:flask-api/database:port::"},
        {"name": "DB_EMPTY", "valueFrom": "secretsmanager:flask-api/database:empty::"},
        {"name": "ROTATING_NEW", "valueFrom": "secretsmanager:rotating"},
        {"name": "ROTATING_OLD", "valueFrom": "secretsmanager:rotating::AWSPREVIOUS:"}
    ]);
    std::fs::write(&p, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    p
}

#[test]
fn every_source_gives_the_child_exact_values() {
    let moto = Moto::start();
    let expected = moto.seed();
    let dir = tempfile::tempdir().unwrap();
    let file = secrets_file(dir.path());
    let (out, env_file) = run_child(&moto.endpoint(), &["--ssm-path", "/test/app", "--secrets-file", file.to_str().unwrap()], dir.path());
    assert_eq!(code(&out, "agent run"), 0, "{}", stderr(&out));
    let env = read_env0(&env_file);
    for (name, value) in &expected {
        assert_eq!(env.get(name), Some(value), "{name} in the child's environment");
    }
    assert_eq!(expected.len(), 121 + 5 + 3 + 6, "the data set: 120 path params + nested, specials, versions, secrets");
    let err = stderr(&out);
    assert!(err.contains(&format!("loaded secrets count={}", expected.len())), "{err}");
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
}

#[test]
fn missing_required_entries_fail_closed_with_one_message() {
    let moto = Moto::start();
    let expected = moto.seed();
    let dir = tempfile::tempdir().unwrap();
    let (out, env_file) = run_child(
        &moto.endpoint(),
        &[
            "--secret",
            "PRESENT=/test/special/EQUALS",
            "--secret",
            "MISSING_ONE=/test/nope/one",
            "--secret",
            "MISSING_TWO=secretsmanager:no-such-secret",
            "--secret",
            "BAD_KEY=secretsmanager:flask-api/database:nokey::",
            "--secret",
            "OPTIONAL?=/test/nope/optional",
        ],
        dir.path(),
    );
    assert_eq!(code(&out, "agent run"), 69, "{}", stderr(&out));
    assert!(!env_file.exists(), "the child never ran");
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "one message:\n{err}");
    let msg = errors[0];
    assert!(msg.contains("cannot load 3 secrets, so the app was not started"), "{msg}");
    assert!(msg.contains("MISSING_ONE (ssm:/test/nope/one): parameter /test/nope/one not found in us-east-1"), "{msg}");
    assert!(msg.contains("MISSING_TWO (secretsmanager:no-such-secret): ResourceNotFoundException"), "{msg}");
    assert!(msg.contains("BAD_KEY") && msg.contains("no key \"nokey\" (its keys: empty, password, port, username)"), "{msg}");
    assert!(!msg.contains("PRESENT") && !msg.contains("OPTIONAL"), "{msg}");
    assert!(err.contains("OPTIONAL (ssm:/test/nope/optional) is optional and was not found; left unset"), "{err}");
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
}

#[test]
fn explicit_beats_path_and_path_conflicts_are_named() {
    let moto = Moto::start();
    let expected = moto.seed();
    let dir = tempfile::tempdir().unwrap();
    let (out, env_file) = run_child(&moto.endpoint(), &["--ssm-path", "/test/small", "--secret", "S1=/test/special/EQUALS"], dir.path());
    assert_eq!(code(&out, "agent run"), 0, "{}", stderr(&out));
    let env = read_env0(&env_file);
    assert_eq!(env["S1"], expected["EQUALS"], "--secret wins over the path entry S1");
    assert_eq!(env["S0"], "small-value-0-z");

    // /test contains /test/app/P000 … and /test/small/S0 …: distinct; but /test/app and a second
    // path holding a parameter with the same last segment conflict.
    moto.put("/test/other/P001", "conflict-v");
    moto.put("/test/bad/A=B", "conflict-v");
    let dir2 = tempfile::tempdir().unwrap();
    let (out, env_file) =
        run_child(&moto.endpoint(), &["--ssm-path", "/test/app", "--ssm-path", "/test/other", "--ssm-path", "/test/bad"], dir2.path());
    assert_eq!(code(&out, "conflict"), 69, "{}", stderr(&out));
    assert!(!env_file.exists());
    let err = stderr(&out);
    assert!(
        err.contains("both /test/app/P001 and /test/other/P001 would set P001")
            || err.contains("both /test/other/P001 and /test/app/P001 would set P001"),
        "{err}"
    );
    assert!(err.contains("/test/bad/A=B") && err.contains("\"A=B\" is not a valid environment variable name"), "{err}");
}

/// The answers ECS gives (issue "Secrets fidelity"): another account's ARN is asked as given
/// (never answered with the caller's own parameter of that name); overlapping paths load each
/// parameter once; names Docker takes are taken; a stage with its matching version id works.
#[test]
fn ecs_answers_arns_overlapping_paths_names_and_stage_with_id() {
    let moto = Moto::start();
    let expected = moto.seed();
    moto.put("/test/small/sub/DEEPER", "deeper-v");
    let current = {
        let mut c = Command::new(venv().join("bin/python"));
        c.args([
            "-c",
            "import boto3, sys; print(boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='t', aws_secret_access_key='t').get_secret_value(SecretId='rotating')['VersionId'])",
            &moto.endpoint(),
        ]);
        stdout(&run(c, T)).trim().to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let rotating = format!("ROTATING_BOTH=secretsmanager:rotating::AWSCURRENT:{current}");
    let (out, env_file) = run_child(
        &moto.endpoint(),
        &[
            "--ssm-path",
            "/test/small",
            "--ssm-path",
            "/test/small/sub",
            "--secret",
            "MY_VERSION=arn:aws:ssm:us-east-1:123456789012:parameter/test/versioned:1",
            "--secret",
            &rotating,
        ],
        dir.path(),
    );
    assert_eq!(code(&out, "agent run"), 0, "{}", stderr(&out));
    let env = read_env0(&env_file);
    assert_eq!(env["DEEPER"], "deeper-v", "under both paths, loaded once");
    assert_eq!(env["S0"], "small-value-0-z");
    assert_eq!(env["MY_VERSION"], expected["VERSIONED_V1"], "an own-account ARN with a version, as given");
    assert_eq!(env["ROTATING_BOTH"], expected["ROTATING_NEW"]);

    // Names a shell cannot hold (sh drops them from what it passes on): the app is `env` itself.
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.args(["run", "--secret", "spring.datasource.password=/test/special/EQUALS", "--secret", "MY-VAR=/test/versioned", "--", "env", "-0"]);
    let out = run(c, T);
    assert_eq!(code(&out, "dotted names"), 0, "{}", stderr(&out));
    let env: std::collections::HashMap<String, String> =
        stdout(&out).split('\0').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(env["spring.datasource.password"], expected["EQUALS"]);
    assert_eq!(env["MY-VAR"], expected["VERSIONED_LATEST"]);

    // Another account's ARN of a name this account also has: not found, never our own value.
    let dir = tempfile::tempdir().unwrap();
    let other = "arn:aws:ssm:us-east-1:999999999999:parameter/test/special/EQUALS";
    let (out, env_file) = run_child(&moto.endpoint(), &["--secret", &format!("SHARED={other}")], dir.path());
    assert_eq!(code(&out, "another account's ARN"), 69, "{}", stderr(&out));
    assert!(!env_file.exists(), "the child never ran");
    let err = stderr(&out);
    assert!(err.contains(other) && err.contains("not found"), "{err}");
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
}

/// `--secrets-file` takes a whole task definition, in both shapes: the container's `secrets` are
/// fetched and its `environment` applies too (below them); `--container` picks the container.
#[test]
fn a_task_definition_file_gives_what_ecs_would() {
    let moto = Moto::start();
    let expected = moto.seed();
    let dir = tempfile::tempdir().unwrap();
    let backend = serde_json::json!({
        "name": "backend-flask",
        "image": "backend-flask:latest",
        "essential": true,
        "environment": [{"name": "FRONTEND_URL", "value": "https://example.org"}, {"name": "EQUALS", "value": "overridden by the secret"}],
        "secrets": [{"name": "EQUALS", "valueFrom": "/test/special/EQUALS"},
                    {"name": "DB_USERNAME", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:flask-api/database:username::"}]
    });
    let xray = serde_json::json!({"name": "xray", "image": "amazon/aws-xray-daemon", "secrets": [{"name": "X", "valueFrom": "/nope"}]});
    // register-task-definition input: two containers.
    let register = dir.path().join("register.json");
    let td = serde_json::json!({"family": "backend-flask", "containerDefinitions": [backend.clone(), xray]});
    std::fs::write(&register, td.to_string()).unwrap();
    let (out, env_file) = run_child(&moto.endpoint(), &["--secrets-file", register.to_str().unwrap(), "--container", "backend-flask"], dir.path());
    assert_eq!(code(&out, "register shape"), 0, "{}", stderr(&out));
    let env = read_env0(&env_file);
    assert_eq!(env["FRONTEND_URL"], "https://example.org", "the container's environment applies");
    assert_eq!(env["EQUALS"], expected["EQUALS"], "a secret wins over an environment entry of the same name");
    assert_eq!(env["DB_USERNAME"], expected["DB_USERNAME"]);
    assert!(!env.contains_key("X"), "only the chosen container");

    // Several containers and no --container: refused, naming them.
    let other = tempfile::tempdir().unwrap();
    let (out, env_file) = run_child(&moto.endpoint(), &["--secrets-file", register.to_str().unwrap()], other.path());
    assert_eq!(code(&out, "several containers"), 78, "{}", stderr(&out));
    assert!(!env_file.exists());
    assert!(stderr(&out).contains("2 containers (backend-flask, xray); choose one with --container NAME"), "{}", stderr(&out));

    // describe-task-definition output, one container: taken without --container.
    let describe = dir.path().join("describe.json");
    std::fs::write(&describe, serde_json::json!({"taskDefinition": {"containerDefinitions": [backend]}, "tags": []}).to_string()).unwrap();
    let (out, env_file) = run_child(&moto.endpoint(), &["--secrets-file", describe.to_str().unwrap()], dir.path());
    assert_eq!(code(&out, "describe shape"), 0, "{}", stderr(&out));
    let env = read_env0(&env_file);
    assert_eq!((env["FRONTEND_URL"].as_str(), env["DB_USERNAME"].as_str()), ("https://example.org", expected["DB_USERNAME"].as_str()));
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
}

/// An AccessDenied on one name of a GetParameters batch is the failure of that name only: the
/// batch is asked again name by name (a fault proxy denies one parameter, in AWS's JSON shape).
#[test]
fn access_denied_is_attributed_to_the_names_it_concerns() {
    let moto = Moto::start();
    let expected = moto.seed();
    let proxy = FaultProxy::start(&moto.endpoint(), &["deny", "/test/special/QUOTES"]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--secret", "EQUALS=/test/special/EQUALS", "--secret", "QUOTES=/test/special/QUOTES", "--secret", "MULTI=/test/special/MULTILINE"];
    let (out, env_file) = run_child(&proxy.endpoint(), &args, dir.path());
    assert_eq!(code(&out, "one name denied"), 69, "{}", stderr(&out));
    assert!(!env_file.exists());
    let err = stderr(&out);
    let msg = err.lines().find(|l| l.contains(" ERROR ")).unwrap_or_else(|| panic!("no ERROR line:\n{err}"));
    assert!(msg.contains("cannot load 1 secret") || msg.contains("cannot load 1 secrets"), "only QUOTES failed: {msg}");
    assert!(msg.contains("QUOTES (ssm:/test/special/QUOTES)") && msg.contains("AccessDenied"), "{msg}");
    assert!(!msg.contains("EQUALS (") && !msg.contains("MULTI ("), "the readable names are not blamed: {msg}");
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
    let (requests, faults) = proxy.stop();
    assert!(requests >= 4 && faults == 2, "the batch, then each name alone (denied twice): {requests} requests, {faults} faults");
}

/// A KMS failure (Secrets Manager's DecryptionFailure, in AWS's JSON error shape) names the secret
/// and says which permission is missing; the other secrets are not blamed.
#[test]
fn a_kms_failure_names_the_secret_and_the_permission() {
    let moto = Moto::start();
    let expected = moto.seed();
    let proxy = FaultProxy::start(&moto.endpoint(), &["kms", "rotating"]);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--secret", "ROT=secretsmanager:rotating", "--secret", "DB_USERNAME=secretsmanager:flask-api/database:username::"];
    let (out, env_file) = run_child(&proxy.endpoint(), &args, dir.path());
    assert_eq!(code(&out, "kms"), 69, "{}", stderr(&out));
    assert!(!env_file.exists());
    let err = stderr(&out);
    let msg = err.lines().find(|l| l.contains(" ERROR ")).unwrap_or_else(|| panic!("no ERROR line:\n{err}"));
    assert!(msg.contains("cannot load 1 secret,"), "{msg}");
    assert!(msg.contains("ROT (secretsmanager:rotating): DecryptionFailure") && msg.contains("kms:Decrypt"), "{msg}");
    assert!(!msg.contains("DB_USERNAME"), "{msg}");
    assert_no_secret_values(&all_output(&out), expected.values(), "the agent's output");
}

#[test]
fn env_file_needs_no_aws_and_inherited_variables_are_overridden_or_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "# local development\nexport DATABASE_URL=\"postgres://local-dotenv-v/db\"\nQUOTED='single \"q\" dotenv-v'\nAPP_MODE=dotenv-mode\n",
    )
    .unwrap();
    let out_file = dir.path().join("child-env");
    let child = format!("env -0 > {}", out_file.display());
    let mut c = agent_cmd();
    c.args(["run", "--env-file", dotenv.to_str().unwrap(), "--", "sh", "-c", &child])
        .env_remove("AWS_ENDPOINT_URL")
        .env("APP_MODE", "inherited-mode");
    let out = run(c, T);
    assert_eq!(code(&out, "env-file"), 0, "{}", stderr(&out));
    let env = read_env0(&out_file);
    assert_eq!(env["DATABASE_URL"], "postgres://local-dotenv-v/db");
    assert_eq!(env["QUOTED"], "single \"q\" dotenv-v");
    assert_eq!(env["APP_MODE"], "dotenv-mode", "a loaded value overrides the inherited one");
    assert!(stderr(&out).contains("secrets override inherited variables of the same name names=APP_MODE"), "{}", stderr(&out));
    assert!(!env.keys().any(|k| k.starts_with("AGENT_")), "the agent's own variables stay with the agent");

    let mut c = agent_cmd();
    c.args(["run", "--no-override", "--env-file", dotenv.to_str().unwrap(), "--", "sh", "-c", &child]).env("APP_MODE", "inherited-mode");
    let out = run(c, T);
    assert_eq!(read_env0(&out_file)["APP_MODE"], "inherited-mode", "--no-override keeps the inherited value");
    assert!(stderr(&out).contains("inherited variables kept"), "{}", stderr(&out));
    assert_no_secret_values(&all_output(&out), ["postgres://local-dotenv-v/db".to_string(), "single \"q\" dotenv-v".to_string()].iter(), "output");
}

#[test]
fn agent_env_prints_fingerprints_and_secrets_dir_writes_0400_files() {
    let moto = Moto::start();
    let expected = moto.seed();
    let dir = tempfile::tempdir().unwrap();
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.args(["env", "--secret", "DB_PASSWORD=secretsmanager:flask-api/database:password::", "--secret", "V=/test/versioned:prod"]);
    let out = run(c, T);
    assert_eq!(code(&out, "agent env"), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let sha = |v: &str| {
        use std::io::Write;
        let mut p = Command::new("sha256sum").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        p.stdin.take().unwrap().write_all(v.as_bytes()).unwrap();
        String::from_utf8(p.wait_with_output().unwrap().stdout).unwrap()[..8].to_string()
    };
    let line = text.lines().find(|l| l.starts_with("DB_PASSWORD")).expect(&text);
    assert!(
        line.contains("secretsmanager:flask-api/database#password") && line.ends_with(&format!("sha256:{}", sha(&expected["DB_PASSWORD"]))),
        "{text}"
    );
    let line = text.lines().find(|l| l.starts_with("V ")).expect(&text);
    assert!(
        line.contains("ssm:/test/versioned:prod") && line.contains(" 2 ") && line.ends_with(&format!("sha256:{}", sha("versioned-two"))),
        "{text}"
    );
    assert_no_secret_values(&all_output(&out), expected.values(), "agent env");

    // The app reads the file while it runs; once the agent has exited, the files are gone.
    let secrets_dir = dir.path().join("run-secrets");
    let (copy, mode) = (dir.path().join("copy"), dir.path().join("mode"));
    let f = secrets_dir.join("MULTILINE");
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.args(["run", "--secrets-dir", secrets_dir.to_str().unwrap(), "--secret", "MULTILINE=/test/special/MULTILINE", "--", "sh", "-c"]).arg(format!(
        "cp {f} {copy} && stat -c %a {f} > {mode}",
        f = f.display(),
        copy = copy.display(),
        mode = mode.display()
    ));
    let out = run(c, T);
    assert_eq!(code(&out, "secrets-dir"), 0, "{}", stderr(&out));
    assert_eq!(read(&copy), expected["MULTILINE"]);
    assert_eq!(read(&mode).trim(), "400");
    assert!(!f.exists() && !secrets_dir.exists(), "the files and the directory are removed when the agent exits");
    assert!(stderr(&out).contains("removed the secrets files"), "{}", stderr(&out));
}

/// Through the fault proxy with one fault kind; the child must start; returns (requests, faults, took).
fn through_faults(fault: &[&str], extra: &[&str]) -> (u64, u64, Duration) {
    let moto = Moto::start();
    let expected = moto.seed();
    let proxy = FaultProxy::start(&moto.endpoint(), fault);
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--secret", "EQUALS=/test/special/EQUALS", "--secret", "DB_USERNAME=secretsmanager:flask-api/database:username::"];
    args.extend_from_slice(extra);
    let start = Instant::now();
    let (out, env_file) = run_child(&proxy.endpoint(), &args, dir.path());
    let took = start.elapsed();
    assert_eq!(code(&out, "through faults"), 0, "{fault:?}: {}", stderr(&out));
    let env = read_env0(&env_file);
    assert_eq!(env["EQUALS"], expected["EQUALS"]);
    assert_eq!(env["DB_USERNAME"], expected["DB_USERNAME"]);
    assert_no_secret_values(&all_output(&out), expected.values(), "output under faults");
    let (requests, faults) = proxy.stop();
    (requests, faults, took)
}

#[test]
fn throttling_is_retried_until_it_passes() {
    let (requests, faults, _) = through_faults(&["throttle", "4"], &[]);
    assert_eq!(faults, 4);
    assert!(requests >= 6, "2 calls + 4 retries, saw {requests}");
}

#[test]
fn server_errors_are_retried() {
    let (requests, faults, _) = through_faults(&["error500", "3"], &[]);
    assert_eq!(faults, 3);
    assert!(requests >= 5, "saw {requests}");
}

#[test]
fn dropped_connections_are_retried() {
    let (_, faults, _) = through_faults(&["drop", "3"], &[]);
    assert_eq!(faults, 3);
}

#[test]
fn slow_answers_are_abandoned_and_retried() {
    // --secrets-timeout 8s gives each attempt 2 s; the first answer takes 6 s.
    let (_, faults, took) = through_faults(&["slow", "1", "6"], &["--secrets-timeout", "8s"]);
    assert_eq!(faults, 1);
    assert!(took < Duration::from_secs(6), "the slow attempt was abandoned, not waited for: {took:?}");
}

#[test]
fn a_total_outage_fails_within_the_secrets_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let closed = Closed::new(); // refused, whatever else runs here
    let start = Instant::now();
    let (out, env_file) = run_child(&closed.endpoint(), &["--secrets-timeout", "3s", "--secret", "A=/x/a", "--ssm-path", "/x/path"], dir.path());
    let took = start.elapsed();
    assert_eq!(code(&out, "outage"), 69, "{}", stderr(&out));
    assert!(!env_file.exists());
    assert!(took < Duration::from_secs(5), "failed within --secrets-timeout 3s (+ start-up): {took:?}");
    let err = stderr(&out);
    // Nothing takes a connection: that is the one line (an explicit timeout is its limit too).
    let want = format!("cannot connect to {} (from AWS_ENDPOINT_URL) for 3s: Connection refused", closed.endpoint());
    assert!(err.contains(&want), "{err}");
}

/// With the default --secrets-timeout (60 s), an endpoint that takes no connection fails the
/// step after 10 s with one readable line: the endpoint, how it was chosen, the system's error.
/// No credentials at all: the task-role hint, not the credential chain's Debug dump.
#[test]
fn an_unreachable_endpoint_and_missing_credentials_read_as_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let closed = Closed::new();
    let (out, env_file) = run_child(&closed.endpoint(), &["--secret", "A=/x/a"], dir.path());
    assert_eq!(code(&out, "unreachable"), 69, "{}", stderr(&out));
    assert!(!env_file.exists());
    let err = stderr(&out);
    let want = format!("cannot connect to {} (from AWS_ENDPOINT_URL) for 10s: Connection refused", closed.endpoint());
    assert!(err.contains(&want), "{err}");

    // An image without root certificates (FROM scratch): HTTPS trusts Mozilla's roots, built in,
    // said in one line; a server whose certificate no Mozilla root signed (here a self-signed one)
    // is refused with one line that says so, never a Debug dump.
    let (cert, key) = make_cert(dir.path());
    let tls = Sink::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
    let mut c = agent_cmd();
    aws_env(&mut c, &format!("https://localhost:{}", tls.port));
    c.env("SSL_CERT_FILE", "/nonexistent").env("SSL_CERT_DIR", "/nonexistent").args([
        "run",
        "--secrets-timeout",
        "3s",
        "--secret",
        "A=/x/a",
        "--",
        "true",
    ]);
    let out = run(c, T);
    assert_eq!(code(&out, "untrusted"), 69, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("HTTPS trusts the Mozilla roots built into the agent").count(), 1, "{err}");
    assert!(err.contains("not signed by a Mozilla root"), "{err}");
    assert!(!err.contains("WARN") && !err.contains(" { "), "no Debug dump: {err}");

    let moto = Moto::start();
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    c.args(["run", "--secret", "A=/x/a", "--", "true"]);
    let out = run(c, T);
    assert_eq!(code(&out, "no credentials"), 69, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no AWS credentials") && err.contains("task role"), "{err}");
    for line in err.lines() {
        for debug in ["DispatchFailure", "ConnectorError", "CredentialsNotLoaded", "ProviderChainError", "Some("] {
            assert!(!line.contains(debug), "a Debug dump at the default log level: {line}");
        }
    }

    // No region anywhere (IMDS allowed to be asked): the agent's one line, not the SDK's WARN
    // with the IMDS answer dumped.
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.env_remove("AWS_REGION").env_remove("AWS_DEFAULT_REGION").env_remove("AWS_EC2_METADATA_DISABLED").env("HOME", dir.path());
    c.env("AWS_CONFIG_FILE", "/nonexistent").args(["run", "--secret", "A=/x/a", "--", "true"]);
    let out = run(c, T);
    assert_eq!(code(&out, "no region"), 69, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no AWS region for A: set AWS_REGION"), "{err}");
    assert!(!err.contains("IMDS") && !err.contains(" WARN "), "only the agent's own line: {err}");
}

#[test]
fn fifty_agents_under_a_40_per_second_limit_all_start() {
    let moto = Moto::start();
    let expected = moto.seed();
    let proxy = FaultProxy::start(&moto.endpoint(), &["rate", "40"]);
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let out_file = dir.path().join(format!("child-{i}"));
            let mut c = agent_cmd();
            aws_env(&mut c, &proxy.endpoint());
            c.args(["run", "--ssm-path", "/test/small", "--secret", "EQUALS=/test/special/EQUALS", "--start-jitter", "1s", "--"])
                .args(["sh", "-c", &format!("env -0 > {}", out_file.display())])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            (c.spawn().unwrap(), out_file)
        })
        .collect();
    let mut all = String::new();
    for (child, out_file) in children {
        let out = child.wait_with_output().unwrap();
        all.push_str(&all_output(&out));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let env = read_env0(&out_file);
        assert_eq!(env["S4"], "small-value-4-z");
        assert_eq!(env["EQUALS"], expected["EQUALS"]);
    }
    let (requests, faults) = proxy.stop();
    eprintln!("fleet: {requests} requests, {faults} throttled");
    assert!(requests >= 100, "two calls per agent at least: {requests}");
    assert_no_secret_values(&all, expected.values(), "the fleet's output");
}
