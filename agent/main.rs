//! `agent`: parse the command line, block signals (for `run`, before anything else), read the
//! config, start logging, dispatch. The one place errors become exit codes.

use std::process::ExitCode;

use clap::Parser;

use agent::cli::{Cli, Command};
use agent::config::{self, FileConfig};
use agent::exit::{Code, Fatal};
use agent::{commands, logging, panics, supervisor};

fn main() -> ExitCode {
    // One malloc arena: the agent allocates little, and glibc would otherwise reserve (and
    // then trim) an arena for each of its threads, which costs start-up time for nothing.
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Code::Usage.into() } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(fatal) => {
            tracing::error!(code = fatal.code.as_u8(), "{fatal}");
            fatal.code.into()
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Fatal> {
    // Signals that arrive while the agent starts stay pending and reach the child later.
    let handled = match cli.command {
        Command::Run(_) => Some(supervisor::block_signals().map_err(|e| Fatal::internal("cannot block signals", e))?),
        _ => None,
    };
    let file = config::load_file(&cli);
    let global = config::global(&cli, file.as_ref().unwrap_or(&FileConfig::default()));
    logging::init(global.log_format, global.log_level);
    // From here a panic in a side job is one log line and stops only that job.
    panics::install_hook();
    let file = file?;

    match &cli.command {
        Command::Run(args) => commands::run::run(args, &file, handled.as_ref().expect("blocked above")),
        Command::Health(args) => Ok(commands::health::run(args, &file)),
        Command::Env(args) => commands::env::run(args, &file),
        Command::Version => Ok(commands::version::run()),
    }
}
