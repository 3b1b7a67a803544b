#!/usr/bin/env bash
# The main job for now: build sluice, create a topic in ./data, produce lines into it and
# read them back. (`sluice run pipelines.yaml` replaces this once pipelines exist.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sluice
sluice=target/release/sluice
data=${SLUICE_DATA_DIR:-./data}

"$sluice" --data-dir "$data" topics describe quickstart >/dev/null 2>&1 \
  || "$sluice" --data-dir "$data" topics create quickstart --partitions 3 --config retention.ms=86400000
printf 'user-1:signed up\nuser-2:signed up\nuser-1:ordered 3 books\nuser-2:left a review\n' \
  | "$sluice" --data-dir "$data" produce quickstart --key-separator : --print-offsets
echo "--- everything in the topic (key, value):"
"$sluice" --data-dir "$data" consume quickstart --from-beginning --exit-at-end --print-key
echo "---"
"$sluice" --data-dir "$data" topics describe quickstart
