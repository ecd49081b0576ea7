//! The `hookrouter` command: parse arguments, load the config, run or check, map to an exit code.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use hookrouter::app::{self, LogFormat};

/// Exit code for a configuration that does not validate.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "hookrouter",
    version,
    about = "Webhook gateway: verify, route and deliver webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "HOOKROUTER_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log level or filter (`info`, `warn`, `hookrouter=debug`).
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "HOOKROUTER_LOG_LEVEL"
    )]
    log_level: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router.
    Run {
        /// Config file.
        #[arg(short, long, default_value = "router.yaml")]
        config: PathBuf,
    },
    /// Validate a config file and report every problem (exit 0 valid, 2 invalid).
    Check {
        /// Config file.
        #[arg(short, long, default_value = "router.yaml")]
        config: PathBuf,
    },
    /// Check a request's signature as the router would: prints `valid` or `invalid: REASON`
    /// (exit 0 valid, 1 invalid, 2 usage error).
    Verify(Box<hookrouter::cli::VerifyArgs>),
    /// Send a correctly signed sample event (like `stripe trigger`) and print the answer.
    Send(Box<hookrouter::cli::SendArgs>),
    /// Dead letters of async routes: `list`, `replay` (over the running router's admin API).
    Dlq(Box<hookrouter::cli::DlqArgs>),
    /// Stored events of async routes: `list`, `show`, `replay` (over the admin API).
    Events(Box<hookrouter::cli::EventsArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => hookrouter::cli::verify(&args),
        Command::Send(args) => hookrouter::cli::send(&args),
        Command::Dlq(args) => hookrouter::cli::dlq(&args),
        Command::Events(args) => hookrouter::cli::events(&args),
        Command::Check { config } => match app::prepare(config.clone()) {
            Ok(p) => {
                let n = p.route_count();
                let plural = if n == 1 { "route" } else { "routes" };
                println!("{}: valid ({n} {plural})", config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", config.display(), errors.errors.len());
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Run { config } => {
            if let Err(e) = app::init_logging(cli.log_format, &cli.log_level) {
                eprintln!("hookrouter: {e:#}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let prepared = match app::prepare(config) {
                Ok(p) => p,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match app::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("hookrouter: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(app::run(prepared, app::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hookrouter: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
