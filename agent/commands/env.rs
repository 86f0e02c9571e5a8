//! `agent env`: resolve the secrets exactly as `agent run` would, and print what the child
//! would get — name, source, version and 8 hex characters of the value's SHA-256, never the
//! value — to compare tasks or check a task definition without starting the app.

use std::process::ExitCode;

use tracing::error;

use crate::cli::EnvArgs;
use crate::config::FileConfig;
use crate::exit::{Code, Fatal};
use crate::secrets;

pub fn run(args: &EnvArgs, file: &FileConfig) -> Result<ExitCode, Fatal> {
    let cfg = secrets::settings::config(&args.secrets, file)?;
    let resolved = match cfg.resolve_blocking() {
        Ok(r) => r,
        Err(e) => {
            error!(code = Code::Secrets.as_u8(), "{e}");
            return Ok(Code::Secrets.into());
        }
    };
    let rows: Vec<[String; 4]> =
        resolved.vars.iter().map(|v| [v.name.clone(), v.source.clone(), v.version.clone(), format!("sha256:{}", v.value.fingerprint())]).collect();
    let header = ["NAME".to_string(), "SOURCE".into(), "VERSION".into(), "VALUE".into()];
    let width = |i: usize| rows.iter().chain([&header]).map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in [&header].into_iter().chain(rows.iter()) {
        println!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    Ok(ExitCode::SUCCESS)
}
