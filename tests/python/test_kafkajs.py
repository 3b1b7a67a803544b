"""kafkajs 2.2.4 (a pure JavaScript client, ApiVersions v2 and non-flexible versions only)
against the real broker: idempotent gzip producer and a consumer group."""

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def test_kafkajs_producer_and_consumer_group(broker):
    if not (NODE_DIR / "node_modules" / "kafkajs").exists():
        pytest.fail("tests/node/node_modules is missing: run `npm ci --prefix tests/node` (scripts/test.sh does)")
    out = subprocess.run(["node", str(NODE_DIR / "kafkajs_roundtrip.js"), broker.bootstrap, "js-topic", "1000"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK 1000"
