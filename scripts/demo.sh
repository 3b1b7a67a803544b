#!/usr/bin/env bash
# The main job: build sluice, put sample orders (and one bad line) into quickstart/in, run the
# quickstart pipeline (configs/quickstart.yaml) for a few seconds, and show what came out.
# For a long-running pipeline: target/release/sluice run configs/quickstart.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p sluice
sluice=target/release/sluice
mkdir -p quickstart/in
batch="orders-$(date +%s).json"
for i in 1 2 3 4 5; do
  printf '{"order_id": %d, "customer": "c-%d", "amount": %d.50}\n' "$i" "$((i % 3))" "$((i * 7))"
done > "quickstart/in/$batch"
echo 'this line is not JSON' >> "quickstart/in/$batch"
"$sluice" validate configs/quickstart.yaml
"$sluice" run configs/quickstart.yaml &
pid=$!
sleep "${DEMO_SECONDS:-4}"
kill -INT "$pid"
wait "$pid"
echo "--- quickstart/out (every good line, exactly once):"
cat quickstart/out/*.jsonl
echo "--- dead-letter topic orders-dlq:"
"$sluice" --data-dir quickstart/data consume orders-dlq --from-beginning --exit-at-end
