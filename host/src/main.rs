//! The `switchyard` command: `serve` runs the service; every other command is a client of its
//! REST API (or, like `verify`, works offline). The commands live in `cli/`, one file per
//! command group, each with its own `run()`; this file only hands over.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
