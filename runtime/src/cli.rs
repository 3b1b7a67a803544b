//! Command-line arguments. The command and flag names are a contract: scripts and later
//! issues rely on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a durable log, Kafka-compatible broker and connector runtime in one binary"
)]
pub struct Cli {
    /// Where topics, offsets and schemas live.
    #[arg(long, global = true, default_value = "./data", env = "SLUICE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Format of the diagnostic log on stderr (filter it with RUST_LOG, e.g. RUST_LOG=info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Append one record per line of standard input to a topic.
    Produce(ProduceArgs),
    /// Print the records of a topic, one value per line.
    Consume(ConsumeArgs),
    /// Follow a topic's records as they arrive, one JSON object per line, keys and values
    /// decoded with their schema (Avro through the built-in registry), with headers.
    Tap(TapArgs),
    /// Show consumer groups and their committed offsets.
    Groups {
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Serve the Kafka protocol on the data directory: real Kafka clients produce, consume and
    /// run consumer groups against it.
    Broker(BrokerArgs),
    /// Serve the Confluent-compatible schema registry on the data directory.
    Registry(RegistryArgs),
    /// Run the pipelines of a YAML file until SIGINT/SIGTERM: sources → topics → sinks.
    Run {
        file: PathBuf,
        /// Where Kafka Connect's REST API listens (overrides `runtime.rest.listen`;
        /// port 0 picks a free one, printed on stdout).
        #[arg(long, value_name = "HOST:PORT")]
        rest_listen: Option<std::net::SocketAddr>,
        /// Do not watch the file for changes (SIGHUP still reloads it).
        #[arg(long)]
        no_watch: bool,
    },
    /// The connectors of a running `sluice run` and their tasks, from its REST API.
    Status(RestArgs),
    /// A live view of a running `sluice run` (like `vector top`): states, rates, lag, errors;
    /// keys to sort, filter, pause, resume and restart connectors.
    Top(TopArgs),
    /// Steer the connectors of a running `sluice run` over its REST API.
    Connectors {
        #[command(flatten)]
        rest: RestArgs,
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// Check a pipeline file without running it: every error with its line and column.
    Validate { file: PathBuf },
    /// Connector plugins: dynamic libraries in plugin folders.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Measure Sluice against the machine's own limits.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line (internal topics start with `__`).
    List,
    /// Show a topic's id, configuration and partitions.
    Describe { name: String },
    /// Delete a topic, its data and the group offsets committed for it.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Topic settings with Kafka's names, e.g. `--config retention.ms=3600000` (repeatable).
    /// Known: cleanup.policy, retention.ms, retention.bytes, segment.bytes, segment.ms,
    /// index.interval.bytes, flush.messages, flush.ms, delete.retention.ms, max.message.bytes.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first occurrence of this character into key and value; a line
    /// without it is an error. Without this flag lines have no key.
    #[arg(long, value_name = "CHAR")]
    pub key_separator: Option<char>,
    /// Write every record to this partition instead of choosing by key (Kafka's murmur2) or
    /// spreading keyless records batch by batch.
    #[arg(long)]
    pub partition: Option<i32>,
    /// After each batch is stored (and fsynced, per the topic's flush policy) print
    /// `PARTITION<TAB>FIRST_OFFSET<TAB>LAST_OFFSET` on stdout.
    #[arg(long)]
    pub print_offsets: bool,
}

#[derive(Debug, Args)]
pub struct TapArgs {
    pub topic: String,
    /// Start at the oldest record instead of the next one written.
    #[arg(long)]
    pub from_beginning: bool,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Exit once every partition read has been read to its end.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Start at the oldest record instead of waiting for new ones.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    pub offset: Option<i64>,
    /// Exit once every partition read has been read to its end, instead of waiting for more.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Print `KEY<SEP>VALUE` instead of the value alone.
    #[arg(long)]
    pub print_key: bool,
    /// Print the record's headers first, as a JSON object of strings (`{}` when none),
    /// followed by the key separator; headers that are not UTF-8 are shown lossily.
    #[arg(long)]
    pub print_headers: bool,
    /// Separator between key and value with --print-key.
    #[arg(long, default_value = "\t", value_name = "STRING")]
    pub key_separator: String,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups with committed offsets.
    List,
    /// Show a group's committed offsets, end offsets and lag per partition.
    Describe { group: String },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append and read back records on one partition, beside raw sequential file I/O.
    Log(LogBenchArgs),
    /// Produce, consume and end-to-end latency through the Kafka protocol with kcat (librdkafka).
    Broker(BrokerBenchArgs),
    /// Schema registration cost, and look-up throughput and latency under load from `wrk`.
    Registry(RegistryBenchArgs),
    /// File → topic → file through the pipeline runtime, beside `cp`, with peak memory.
    Pipeline(PipelineBenchArgs),
    /// The cost of the plugin boundary: the same connectors built in and loaded as a plugin.
    Plugin(PluginBenchArgs),
    /// The REST API under load from `wrk` while a pipeline runs: status calls/s and latency.
    Rest(RestBenchArgs),
    /// The `http` sink into a local counting server, beside `wrk` posting the same bodies.
    HttpSink(HttpSinkBenchArgs),
    /// The `http_server` webhook source under `wrk`, beside a bare axum hello world.
    Webhook(WebhookBenchArgs),
    /// The `postgres` sink's rows/s (insert, upsert) beside `psql \copy` of the same rows.
    PostgresSink(PostgresSinkBenchArgs),
    /// The `postgres_cdc` source: snapshot beside `psql \copy TO`, streaming changes/s,
    /// commit-to-log latency, a large transaction, peak memory.
    PostgresCdc(PostgresCdcBenchArgs),
    /// The replication pipeline (`postgres_cdc` -> topic -> `postgres` sink): sustained
    /// changes/s, and the lag from source commit to replica commit at a fixed rate.
    PostgresReplication(PostgresReplicationBenchArgs),
    /// `sluice broker` beside one Apache Kafka node on this machine, alternated in one run:
    /// Kafka's ProducerPerformance/ConsumerPerformance and kcat, the same client settings.
    Kafka(KafkaBenchArgs),
}

#[derive(Debug, Args)]
pub struct KafkaBenchArgs {
    /// Apache Kafka's classpath directory (what `scripts/kafka-jars.sh` prints).
    #[arg(long, env = "SLUICE_KAFKA_LIB")]
    pub kafka_lib: PathBuf,
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Rounds; each runs every workload on both brokers in turn. Medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Records/s of the fixed-rate run whose latency percentiles are reported (5 s long).
    #[arg(long, default_value_t = 20_000)]
    pub latency_rate: u64,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PostgresCdcBenchArgs {
    /// The server to capture from (libpq key/value; wal_level logical, a user with
    /// REPLICATION), e.g. "host=127.0.0.1 port=5432 user=postgres dbname=postgres".
    #[arg(long)]
    pub connection: String,
    /// Rows in the snapshotted table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Updates per streaming round.
    #[arg(long, default_value_t = 400_000)]
    pub changes: u64,
    /// Rounds of the snapshot and of streaming; medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Updates per second asked of pgbench for the latency figures.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Also Debezium 3.6's Postgres connector (its embedded engine, JSON, no broker) on the
    /// same table and changes: needs Maven and a JDK (17+).
    #[arg(long)]
    pub debezium: bool,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PostgresReplicationBenchArgs {
    /// The server (libpq key/value; wal_level logical, a user with REPLICATION), e.g.
    /// "host=127.0.0.1 port=5432 user=postgres dbname=postgres".
    #[arg(long)]
    pub connection: String,
    /// Inserts of the sustained run.
    #[arg(long, default_value_t = 200_000)]
    pub changes: u64,
    /// Inserts per second asked of pgbench for the lag figures.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Seconds of the lag run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PostgresSinkBenchArgs {
    /// The server to write to (libpq key/value), e.g. "host=127.0.0.1 port=5432 user=postgres dbname=postgres".
    #[arg(long)]
    pub connection: String,
    /// Rows per round.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Rounds of each, interleaved; medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct WebhookBenchArgs {
    /// Seconds of wrk per row and round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// Rounds of each, interleaved; medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct HttpSinkBenchArgs {
    /// Records the sink delivers in each round.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Partitions of the topic (each is a lane of the sink).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// The sink's `max_in_flight`, and wrk's connections.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// The sink's `tasks` (each reads its share of the partitions on its own thread).
    #[arg(long, default_value_t = 1)]
    pub tasks: u32,
    /// Seconds of wrk per round.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds of each, interleaved; medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestBenchArgs {
    /// Seconds of load per endpoint.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PluginBenchArgs {
    /// Records through each pipeline.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// The example plugin library (default: libsluice_example_plugin.so beside this binary,
    /// as `cargo build --release -p sluice-example-plugin` leaves it).
    #[arg(long)]
    pub library: Option<PathBuf>,
    /// Rounds of each, interleaved; medians are printed.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin in the plugin folders: version, connector types and their settings, and
    /// any library that failed to load, with the reason.
    List(PluginsListArgs),
}

#[derive(Debug, Args)]
pub struct PluginsListArgs {
    /// A plugin folder (repeat for several); `SLUICE_PLUGIN_PATH` adds more (colon-separated).
    #[arg(long = "plugin-path")]
    pub plugin_path: Vec<PathBuf>,
    /// Also the folders a pipeline file names in `plugin_path`.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PipelineBenchArgs {
    /// JSON lines of about 200 bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Rounds of every run (and of `cp`); medians are printed, as the machine is shared.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Which runs: any of bytes, bytes-no-metrics, json, avro, envelope, csv
    /// (comma-separated). Every run counts into metrics as `sluice run` does, except
    /// bytes-no-metrics, which gives the metrics' cost beside bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bytes,bytes-no-metrics,json,avro,envelope,csv"
    )]
    pub runs: Vec<String>,
    /// Memory for the page cache before each timed step (`cp` and every run): `warm` writes
    /// and removes a scratch file first, so that every step gets pages the machine has just
    /// used; `cold` waits 4 s first, so that a VM that hands freed memory back to its host
    /// (free page reporting) makes every step fault its pages in again; `as-is` does neither.
    #[arg(long, value_parser = ["warm", "cold", "as-is"], default_value = "warm")]
    pub page_cache: String,
    /// Count instructions instead of time: each run under `valgrind --tool=callgrind` on a
    /// fixed input, at two sizes, printing instructions per record (the difference between
    /// the sizes, so start-up is left out) beside the totals. Needs valgrind.
    #[arg(long)]
    pub instructions: bool,
    /// Every run also on one Apache Kafka node started from the jars in `--kafka-lib`
    /// (`runtime.kafka`: the topic, source positions and sink group on the cluster), in the
    /// same rounds, with the ratio of each to the embedded log.
    #[arg(long)]
    pub on_kafka: bool,
    /// Apache Kafka's classpath directory (what `scripts/kafka-jars.sh` prints), for
    /// `--on-kafka`.
    #[arg(long, env = "SLUICE_KAFKA_LIB")]
    pub kafka_lib: Option<PathBuf>,
    /// (Internal, for --instructions) run one pipeline once and exit.
    #[arg(long, hide = true)]
    pub once: bool,
    /// (Internal, for --instructions) the input, written beforehand (so that making it is
    /// not counted).
    #[arg(long, hide = true)]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RegistryBenchArgs {
    /// Subjects to register.
    #[arg(long, default_value_t = 100)]
    pub subjects: usize,
    /// Versions per subject (each a compatible evolution of the one before).
    #[arg(long, default_value_t = 10)]
    pub versions: usize,
    /// Length of each wrk run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BrokerBenchArgs {
    /// Records per throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: usize,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per second in the latency run.
    #[arg(long, default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Length of the latency run (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Records per run.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: usize,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_records: usize,
    /// Runs of the whole set; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Folder to write in (a temporary folder inside it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Address to listen on (use port 0 for any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: std::net::SocketAddr,
    /// HOST:PORT clients are told to connect to (default: the listening address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listener: Option<String>,
    /// Refuse to create topics that clients ask for but do not exist.
    #[arg(long)]
    pub no_auto_create_topics: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1)]
    pub default_partitions: u32,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Memory for requests being received, across all connections (Kafka's
    /// `queued.max.request.bytes`); connections wait, unread, for room.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    pub queued_max_request_bytes: usize,
    /// How long the first rebalance of a new (or emptied) consumer group waits for more
    /// members to join, in milliseconds (Kafka's `group.initial.rebalance.delay.ms`).
    #[arg(long, default_value_t = 3000)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Listen on a non-loopback address although the Kafka listener has no authentication
    /// or encryption yet (anyone who can reach it can read, write and delete every topic).
    #[arg(long)]
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Address to listen on (default 127.0.0.1:8081, or `listen` from --config).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// YAML file: `listen`, and `auth` (`basic: [{username, password}]`, `bearer_tokens: [..]`).
    /// Without auth the registry only listens on loopback addresses.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where a running `sluice run`'s REST API is.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub rest: RestArgs,
    /// How often to sample, in milliseconds.
    #[arg(short, long = "interval", default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    /// Print one table (rates over one interval) as text and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct RestArgs {
    /// The REST API's address.
    #[arg(
        long,
        global = true,
        env = "SLUICE_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    pub url: String,
    /// A bearer token, when the API asks for one.
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// The connectors' names.
    List,
    /// One connector's state and its tasks', as JSON.
    Status { name: String },
    /// Create a connector from a JSON file (`-`: stdin) holding Kafka Connect's
    /// `POST /connectors` body: `{"name": …, "config": {"connector.class": …}}`.
    Create { file: std::path::PathBuf },
    /// A connector's config, as Kafka Connect's flat map.
    Config { name: String },
    /// Delete a connector created over the REST API (its committed positions stay).
    Delete { name: String },
    /// Stop reading and writing until resumed (nothing is lost).
    Pause { name: String },
    /// Resume a paused or stopped connector.
    Resume { name: String },
    /// Stop a connector's tasks (their positions committed); it stays, STOPPED.
    Stop { name: String },
    /// Restart a connector's tasks (all, or only the failed ones).
    Restart {
        name: String,
        /// Restart the tasks too (Kafka Connect's `includeTasks`).
        #[arg(long)]
        include_tasks: bool,
        /// Only the tasks that are FAILED (`onlyFailed`).
        #[arg(long)]
        only_failed: bool,
    },
    /// Restart one task.
    RestartTask { name: String, task: u32 },
}
