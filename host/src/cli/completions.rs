//! `switchyard completions SHELL`: a completion script generated from the command tree.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Shown under `switchyard completions --help`.
pub const EXAMPLE: &str = "Examples:\n  switchyard completions bash > ~/.local/share/bash-completion/completions/switchyard\n  switchyard completions zsh > ~/.zfunc/_switchyard";

/// `switchyard completions`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the script on stdout.
pub fn run(args: &Args) -> ExitCode {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "switchyard", &mut script);
    super::output::write_out(&script);
    ExitCode::SUCCESS
}
