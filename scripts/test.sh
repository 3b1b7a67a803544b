#!/usr/bin/env bash
# Sets up what the tests need and runs all of them: the one test command of the README.
# Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# --- what the tests need -------------------------------------------------------------
if ! need cargo; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
# Real Kafka clients: Debian's kcat (librdkafka 2.0.2, the oldest client served), Python
# confluent-kafka (a current librdkafka) and Node kafkajs (pure JavaScript), driven by pytest.
if ! need kcat; then
  echo "== installing kcat (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat
fi
# A real Prometheus server and promtool scrape and check `/metrics` (Debian's package).
if ! need prometheus || ! need promtool; then
  echo "== installing prometheus (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus
fi
# Real PostgreSQL servers for the Postgres connectors' tests (initdb and pg_ctl from
# Debian's package; the tests start their own servers on free ports).
if ! need initdb && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "== installing postgresql (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
fi
# `sluice top` is driven in a real terminal multiplexer.
if ! need tmux; then
  echo "== installing tmux (Debian package)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tmux
fi
if ! python3 -c "import confluent_kafka, pytest, fastavro; from confluent_kafka.schema_registry.avro import AvroSerializer" 2>/dev/null; then
  echo "== installing confluent-kafka (with its schema-registry and Avro extras) and pytest (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "confluent-kafka[avro,schemaregistry]>=2.3,<3" "pytest>=7"
fi
# A real Kafka Connect REST client (the `kc` tool's library) for the control plane's API.
if ! python3 -c "import kafka_connect" 2>/dev/null; then
  echo "== installing kafka-connect-py (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check "kafka-connect-py>=0.9,<1"
fi
# Apache Kafka's own Java clients and tools (the protocol's reference implementation) from
# Maven Central, run against the broker; Java 17 and Maven first if the machine lacks them.
if ! need java || ! need mvn; then
  echo "== installing Java 17 and Maven (Debian packages)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven
fi
SLUICE_KAFKA_LIB="$(scripts/kafka-jars.sh)"
export SLUICE_KAFKA_LIB
# The dashboard's end-to-end tests drive Debian's Chromium (playwright-core) and Firefox ESR
# (puppeteer-core, WebDriver BiDi), both clients from npm.
if ! need chromium || ! need firefox-esr; then
  echo "== installing chromium and firefox-esr (Debian packages)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium firefox-esr
fi
if command -v npm >/dev/null 2>&1 && { [ ! -d tests/node/node_modules/kafkajs ] || [ ! -d tests/node/node_modules/playwright-core ] || [ ! -d tests/node/node_modules/puppeteer-core ]; }; then
  echo "== installing kafkajs, playwright-core and puppeteer-core (npm)"
  npm ci --prefix tests/node --no-audit --no-fund --silent
fi

# --- checks and tests ----------------------------------------------------------------
# fmt and clippy are rustup components a bare toolchain may lack: skip them loudly, never
# silently, and still run every test.
if cargo fmt --version >/dev/null 2>&1; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
else
  echo "!! WARNING: cargo fmt is not installed (rustup component add rustfmt): formatting NOT checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "!! WARNING: cargo clippy is not installed (rustup component add clippy): lints NOT checked" >&2
fi
echo "== cargo test"
cargo test --workspace --locked
echo "== real Kafka and schema-registry clients against the sluice binary (pytest)"
# `cargo test` above built target/debug/sluice for the end-to-end tests; the same binary serves here.
SLUICE_BIN="$PWD/target/debug/sluice" python3 -m pytest tests/python -q -p no:cacheprovider
