//! The `taskraft` command-line tool.
//!
//! `main` parses the arguments, sets up logging, runs one subcommand and
//! maps the result to the exit status: 0 success, 1 the operation failed,
//! 2 bad usage or config.

#![warn(clippy::all)]

mod args;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Why a command failed, and with which exit status.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or config: exit 2.
    Usage(anyhow::Error),
    /// The operation failed: exit 1.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Failed(e.into())
    }
}

/// Runs the tool with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        _ if cli.quiet => "error,tarpc=off",
        args::Command::Master(_) | args::Command::Worker(_) => "info,openraft=error,tarpc=off",
        _ => "warn,openraft=error,tarpc=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        args::LogFormat::Json => logs.json().init(),
        args::LogFormat::Text => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init()
        }
    }
    abort_on_panic();
    if prints_a_report(&cli.command) {
        die_quietly_on_closed_stdout();
    }
    let runtime = match &cli.command {
        args::Command::Master(master) => master.runtime(),
        args::Command::Bench(bench) => bench.runtime(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The read commands, whose output is often piped into `head` or `grep -q`.
fn prints_a_report(command: &args::Command) -> bool {
    use args::{Command, MemberCommand};
    matches!(
        command,
        Command::Status(_)
            | Command::Tasks(_)
            | Command::Result(_)
            | Command::Member(MemberCommand::List(_))
    )
}

/// Restores the default SIGPIPE action, so that a reader that closes the
/// pipe early ends this process quietly, like any Unix tool, instead of a
/// panic on "Broken pipe". Only for commands that write nothing but their
/// report: a master or a worker must never die of a closed socket or pipe.
fn die_quietly_on_closed_stdout() {
    // SAFETY: called before any thread is spawned; setting a signal's
    // disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A panic anywhere (say, in `apply`) logs and aborts the process: a node
/// must not go on as a zombie replica with a half-applied table.
fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "panic; aborting");
        default(info);
        std::process::abort();
    }));
}
