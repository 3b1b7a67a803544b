"""The dashboard (`/ui`) in a real headless Chromium (Debian's `chromium`, driven by
playwright-core from npm) against a running `sluice run`: the graph with live rates, pausing
and resuming with the buttons, a failed task's trace and its restart, a confirmed stop,
keyboard use, the message browser (an Avro value decoded at a chosen offset, dead-letter
headers), two schema versions side by side, phone width. Screenshots land in target/dashboard-screenshots (not committed)."""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import ROOT, start_run, wait_until

NODE_DIR = ROOT / "tests" / "node"
SHOTS = ROOT / "target" / "dashboard-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

PIPELINE = """
runtime:
  data_dir: {dir}/data
  registry: {{ listen: "127.0.0.1:0" }}
sources:
  orders_in:
    type: file
    path: {dir}/in/*.json
    topic: orders
    value_format: json
    errors:
      tolerance: all
      dead_letter_topic: orders-dlq
  items_in:
    type: file
    path: {dir}/items/*.json
    topic: items
    value_format: avro
    value_schema: '{{"type": "record", "name": "Item", "fields": [{{"name": "sku", "type": "string"}}, {{"name": "qty", "type": "int"}}]}}'
  bad_in:
    type: file
    path: {dir}/bad/*.json
    topic: bad
    value_format: json
sinks:
  orders_out:
    type: file
    topics: [orders]
    value_format: json
    path: {dir}/out
    roll_interval: 1s
"""


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_the_dashboard_in_a_real_browser(tmp_path):
    if not (NODE_DIR / "node_modules" / "playwright-core").exists():
        pytest.fail("tests/node/node_modules is missing: run `npm ci --prefix tests/node` (scripts/test.sh does)")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/test.sh does)")
    for d in ("in", "bad", "out", "items"):
        (tmp_path / d).mkdir()
    (tmp_path / "items" / "a.json").write_text("".join(f'{{"sku":"sku-{i}","qty":{i}}}\n' for i in range(10)))
    (tmp_path / "in" / "a.json").write_text("".join(f'{{"n":{i}}}\n' for i in range(100)) + "not json\n")
    bad = tmp_path / "bad" / "a.json"
    bad.write_text('{"ok":1}\n{broken\n{"ok":2}\n')
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(dir=tmp_path))
    proc, addresses = start_run(tmp_path, pipeline)
    rest = addresses["rest"]  # printed with its scheme: http://127.0.0.1:port
    registry = addresses["registry"]
    stop = threading.Event()

    def feed():
        # Records keep arriving so that rates are not zero; a new file every few seconds.
        n = 0
        while not stop.is_set():
            with open(tmp_path / "in" / f"feed-{n // 200}.json", "a") as f:
                for _ in range(20):
                    f.write(f'{{"feed":{n}}}\n')
                    n += 1
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_until(lambda: any(t["state"] == "FAILED" for t in get_json(f"{rest}/connectors/bad_in/status")["tasks"]),
                   what="bad_in's task failing on the bad line")
        # A second version of the items' schema, for the page's diff.
        wait_until(lambda: get_json(f"{registry}/subjects") == ["items-value"], what="items-value registered")
        v2 = {"type": "record", "name": "Item", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"},
            {"name": "note", "type": ["null", "string"], "default": None}]}
        req = urllib.request.Request(f"{registry}/subjects/items-value/versions", method="POST",
                                     data=json.dumps({"schema": json.dumps(v2)}).encode(),
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert "id" in json.loads(r.read())
        if SHOTS.exists():
            shutil.rmtree(SHOTS)
        SHOTS.mkdir(parents=True)
        done = subprocess.run(["node", "dashboard.mjs", rest, str(bad), str(SHOTS)], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "CHROMIUM": CHROMIUM})
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n(screenshots in {SHOTS})"
        steps = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
        assert len(steps) == 13, done.stdout
        # What the browser did went through the REST API: the API agrees.
        assert get_json(f"{rest}/connectors/orders_out/status")["connector"]["state"] == "STOPPED"
        assert get_json(f"{rest}/connectors/bad_in/status")["tasks"][0]["state"] == "RUNNING"
        assert get_json(f"{rest}/connectors/orders_in/status")["connector"]["state"] == "RUNNING"
    finally:
        stop.set()
        feeder.join(timeout=5)
        proc.kill()
        proc.wait(timeout=30)
