//! The commands, one module each, using the library: [`serve`], [`token`], [`check`], [`client`],
//! [`tls_init`], [`probe`], completions; and the binary's body: parse, dispatch, print a failure as one line
//! with its whole cause chain, and map the outcome to the contract's exit codes (0 success,
//! 1 runtime failure, 2 usage or configuration error).

pub mod check;
pub mod client;
pub mod out;
pub mod probe;
pub mod serve;
pub mod tls_init;
pub mod token;

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{self, Cli, Command};
use crate::config::{Env, ProcessEnv, Settings};
use crate::error::{Failure, config_err};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli, Arc::new(ProcessEnv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("voxproxy: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("voxproxy: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run a parsed command line with the environment `env`.
pub fn run(cli: Cli, env: Arc<dyn Env + Send + Sync>) -> Result<(), Failure> {
    let resolve = || Settings::resolve(&cli.settings, &*env);
    match &cli.command {
        Command::Completions { shell } => completions(*shell),
        Command::Token(args) => {
            let settings = resolve().map_err(config_err)?;
            crate::logging::init(&settings);
            token::run(&settings, args, &mut std::io::stdout().lock())
        }
        Command::Check(args) => {
            // `check` reports every problem, including each bad setting.
            let settings = resolve();
            if let Ok(s) = &settings {
                crate::logging::init(s);
            }
            check::run(settings, args, &mut std::io::stdout())
        }
        // No settings, no logging set up, no environment read: a probe in a bare image.
        Command::Probe(args) => probe::run(args),
        Command::Serve => {
            let settings = resolve().map_err(config_err)?;
            crate::logging::init(&settings);
            serve::run(settings, cli.settings.clone(), env)
        }
        Command::Client(cmd) => {
            let settings = resolve().map_err(config_err)?;
            client::run(&settings, cmd, &mut std::io::stdout())
        }
        Command::Tls(crate::cli::TlsCommand::Init { dir, names, force }) => tls_init::init(
            std::path::Path::new(dir),
            names,
            *force,
            &mut std::io::stdout(),
        ),
    }
}

/// `voxproxy completions SHELL`. A closed stdout (`| head -1`) ends it quietly.
fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "voxproxy", &mut text);
    out::write_out(&mut std::io::stdout().lock(), &text)
}
