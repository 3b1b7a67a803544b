"""The dashboard (`/ui`) in real headless browsers against a running `sluice run`: Debian's
`chromium` driven by playwright-core, and Debian's `firefox-esr` driven by puppeteer-core
(WebDriver BiDi), both from npm. In Chromium: the graph with live rates, pausing
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
FIREFOX = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")

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


class Running:
    """`sluice run` on the dashboard's pipeline, fed with records, for the whole file."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        for d in ("in", "bad", "out", "items"):
            (tmp_path / d).mkdir()
        (tmp_path / "items" / "a.json").write_text("".join(f'{{"sku":"sku-{i}","qty":{i}}}\n' for i in range(10)))
        (tmp_path / "in" / "a.json").write_text("".join(f'{{"n":{i}}}\n' for i in range(100)) + "not json\n")
        self.bad = tmp_path / "bad" / "a.json"
        self.bad.write_text('{"ok":1}\n{broken\n{"ok":2}\n')
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(PIPELINE.format(dir=tmp_path))
        self.proc, addresses = start_run(tmp_path, pipeline)
        self.rest = addresses["rest"]  # printed with its scheme: http://127.0.0.1:port
        self.registry = addresses["registry"]
        self.stop = threading.Event()
        self.feeder = threading.Thread(target=self.feed, daemon=True)
        self.feeder.start()

    def feed(self):
        # Records keep arriving so that rates are not zero; a new file every few seconds.
        n = 0
        while not self.stop.is_set():
            with open(self.dir / "in" / f"feed-{n // 200}.json", "a") as f:
                for _ in range(20):
                    f.write(f'{{"feed":{n}}}\n')
                    n += 1
            time.sleep(0.1)

    def close(self):
        self.stop.set()
        self.feeder.join(timeout=5)
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    for what, path in (("tests/node/node_modules", NODE_DIR / "node_modules" / "puppeteer-core"),
                       ("Debian's chromium", CHROMIUM), ("Debian's firefox-esr", FIREFOX)):
        if not os.path.exists(path):
            pytest.fail(f"{what} is missing ({path}): scripts/test.sh installs it")
    r = Running(tmp_path_factory.mktemp("dashboard"))
    try:
        wait_until(lambda: any(t["state"] == "FAILED" for t in get_json(f"{r.rest}/connectors/bad_in/status")["tasks"]),
                   what="bad_in's task failing on the bad line")
        # A second version of the items' schema, for the page's diff.
        wait_until(lambda: get_json(f"{r.registry}/subjects") == ["items-value"], what="items-value registered")
        v2 = {"type": "record", "name": "Item", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"},
            {"name": "note", "type": ["null", "string"], "default": None}]}
        req = urllib.request.Request(f"{r.registry}/subjects/items-value/versions", method="POST",
                                     data=json.dumps({"schema": json.dumps(v2)}).encode(),
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert "id" in json.loads(resp.read())
        if SHOTS.exists():
            shutil.rmtree(SHOTS)
        SHOTS.mkdir(parents=True)
        yield r
    finally:
        r.close()


def node(script, *args, browser_env):
    done = subprocess.run(["node", script, *args], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **browser_env})
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n(screenshots in {SHOTS})"
    return [line for line in done.stdout.splitlines() if line.startswith("ok ")]


def test_the_dashboard_in_chromium(running):
    steps = node("dashboard.mjs", running.rest, str(running.bad), str(SHOTS), browser_env={"CHROMIUM": CHROMIUM})
    assert len(steps) == 13, steps
    # What the browser did went through the REST API: the API agrees.
    rest = running.rest
    assert get_json(f"{rest}/connectors/orders_out/status")["connector"]["state"] == "STOPPED"
    assert get_json(f"{rest}/connectors/bad_in/status")["tasks"][0]["state"] == "RUNNING"
    assert get_json(f"{rest}/connectors/orders_in/status")["connector"]["state"] == "RUNNING"


def test_the_dashboard_in_firefox(running):
    steps = node("dashboard-firefox.mjs", running.rest, str(SHOTS), browser_env={"FIREFOX": FIREFOX})
    assert len(steps) == 4, steps
    assert get_json(f"{running.rest}/connectors/orders_in/status")["connector"]["state"] == "RUNNING"
