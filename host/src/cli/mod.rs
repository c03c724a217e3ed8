//! The command tree. `serve` runs the service (see [`serve`]); the resource commands talk to a
//! running service over its REST API with the key and server URL from flags, `SWITCHYARD_URL` /
//! `SWITCHYARD_API_KEY`, or a profile file (see [`client`]); `verify` checks a received webhook
//! offline. Human-readable tables by default, `--json` for scripts; a failure prints the
//! server's error and exits non-zero.

mod client;
mod completions;
mod deliveries;
mod events;
mod input;
mod output;
mod plugin_dev;
mod plugins;
mod serve;
mod subscriptions;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Switchyard: a self-hosted webhook and event router with WebAssembly plugins.
///
/// Producers POST events; every matching subscription's plugin filters or reshapes them; the
/// result is signed (Standard Webhooks) and delivered with retries from a SQLite queue.
/// `switchyard serve` runs the service; the other commands drive a running one.
#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service. Settings: flags override SWITCHYARD_* variables, which override
    /// switchyard.toml, which overrides the defaults.
    #[command(after_help = serve::EXAMPLE)]
    Serve(Box<serve::ServeArgs>),
    /// Register, inspect and change webhook endpoints.
    Subscriptions(subscriptions::Args),
    /// Send events and look them up.
    Events(events::Args),
    /// The delivery log: list, inspect, retry, follow live.
    Deliveries(deliveries::Args),
    /// Upload, inspect, delete and dry-run plugins.
    Plugins(plugins::Args),
    /// Check a received webhook's signature (exit 0 when valid, 1 when not, saying why).
    #[command(after_help = verify::EXAMPLE)]
    Verify(verify::Args),
    /// Print a shell completion script.
    #[command(after_help = completions::EXAMPLE)]
    Completions(completions::Args),
}

/// Parses the command line and runs the command; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Subscriptions(args) => client::block_on(subscriptions::run(args)),
        Command::Events(args) => client::block_on(events::run(args)),
        Command::Deliveries(args) => client::block_on(deliveries::run(args)),
        Command::Plugins(args) => client::block_on(plugins::run(args)),
        Command::Verify(args) => verify::run(&args),
        Command::Completions(args) => completions::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// clap's own consistency checks (duplicate flags, bad defaults…), and an example in every
    /// command's help.
    #[test]
    fn the_command_tree_is_consistent_and_every_command_has_an_example() {
        Cli::command().debug_assert();
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let subs: Vec<_> = cmd
                .get_subcommands()
                .filter(|c| c.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let help = cmd
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if !help.contains("switchyard ") {
                    missing.push(path.clone());
                }
            }
            for sub in subs {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }
}
