//! The `switchyard` command: `serve` runs the service; every other command is a client of its
//! REST API (or, like `verify`, works offline). The commands live in `cli/`, one file per
//! command group, each with its own `run()`; this file only hands over.

mod cli;

fn main() -> std::process::ExitCode {
    // The plugin compiler child (see `switchyard::plugins::compile_child_main`): not a
    // command for people, so not in clap's help.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(switchyard::plugins::COMPILE_SUBCOMMAND) {
        std::process::exit(switchyard::plugins::compile_child_main(&argv[2..]));
    }
    cli::main()
}
