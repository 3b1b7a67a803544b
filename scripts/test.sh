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

# --- checks and tests ----------------------------------------------------------------
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
