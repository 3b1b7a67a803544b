//! # sluice: the binary
//!
//! **Owns:** the command line (clap), logging set-up, and the commands that work on a local
//! data directory: `topics`, `produce`, `consume`, `groups`, `broker` (the Kafka protocol
//! listener), `registry`, `run` and `validate` (pipelines from YAML), `plugins` and `bench`.
//!
//! **Must not touch:** the bytes on disk (that is `sluice-log`'s job): commands go through
//! the log's API and never open segment files themselves.
//!
//! ## Layout
//! - `cli`: argument definitions; `topics`, `produce`, `consume`, `groups`, `broker`,
//!   `registry`, `run`, `plugins`: one file per command; `bench*`: the `sluice bench`
//!   subcommands.
//!
//! ## Example
//! ```text
//! sluice topics create orders --partitions 3 --config retention.ms=86400000
//! printf 'k1:hello\nk2:world\n' | sluice produce orders --key-separator :
//! sluice consume orders --from-beginning --exit-at-end --print-key
//! ```

mod bench;
mod bench_broker;
mod bench_cdc;
mod bench_http;
mod bench_instructions;
mod bench_kafka;
mod bench_pipeline;
mod bench_plugin;
mod bench_postgres;
mod bench_registry;
mod bench_replication;
mod bench_rest;
mod bench_webhook;
mod broker;
mod cli;
mod consume;
mod groups;

mod plugins;
mod produce;
mod registry;
mod reload;
mod run;
mod status;
mod tap;
mod top;
mod topics;

use std::process::ExitCode;

/// mimalloc: see runtime/Cargo.toml (plugins free what they allocate on their own side, so
/// the host's allocator is its own choice).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use cli::{Cli, Command, GroupsCommand, LogFormat, TopicsCommand};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `sluice validate FILE`: the same checks `sluice run` will make before starting anything.
fn validate(file: &std::path::Path) -> anyhow::Result<()> {
    let registry = run::connectors_for(file)?;
    let env = |name: &str| std::env::var(name).ok();
    match sluice_worker::config::load_pipeline(file, &registry, &env) {
        Ok(p) => {
            println!(
                "{}: ok ({} sources, {} sinks, {} declared topics)",
                file.display(),
                p.sources.len(),
                p.sinks.len(),
                p.topics.len()
            );
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!("{} has {} error(s)", file.display(), errors.errors.len())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let data_dir = cli.data_dir.clone();
    let result = match cli.command {
        Command::Topics { command } => match command {
            TopicsCommand::Create(args) => topics::create(&data_dir, args),
            TopicsCommand::List => topics::list(&data_dir),
            TopicsCommand::Describe { name } => topics::describe(&data_dir, &name),
            TopicsCommand::Delete { name } => topics::delete(&data_dir, &name),
        },
        Command::Produce(args) => produce::run(&data_dir, args),
        Command::Consume(args) => consume::run(&data_dir, args),
        Command::Tap(args) => tap::run(&data_dir, args),
        Command::Groups { command } => match command {
            GroupsCommand::List => groups::list(&data_dir),
            GroupsCommand::Describe { group } => groups::describe(&data_dir, &group),
        },
        Command::Broker(args) => broker::run(&data_dir, args),
        Command::Registry(args) => registry::run(&data_dir, args),
        Command::Validate { file } => validate(&file),
        Command::Plugins { command } => match command {
            cli::PluginsCommand::List(args) => plugins::list(args),
        },
        Command::Run {
            file,
            rest_listen,
            no_watch,
        } => run::run(&file, rest_listen, !no_watch),
        Command::Bench { command } => bench::run(command),
        Command::Status(rest) => status::status(&rest),
        Command::Top(args) => top::run(args),
        Command::Connectors { rest, command } => status::connectors(&rest, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
