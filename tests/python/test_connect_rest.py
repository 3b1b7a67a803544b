"""Kafka Connect's REST API of a running `sluice run`, driven by a real Kafka Connect REST
client from PyPI (kafka-connect-py): list and expand, status, pause (no records flow, none
lost on resume), restart with onlyFailed, validate with errors; create, reconfigure and
delete connectors, which survive a reload of the file and a restart of the process."""

import os
import signal
import subprocess
import time

import pytest
from kafka_connect import KafkaConnect

from conftest import sluice_binary, start_run, wait_until


def lines_in(folder):
    return [l for p in sorted(folder.glob("*.jsonl")) for l in p.read_text().splitlines()]


def write_pipeline(tmp_path):
    data, inbox, outbox = tmp_path / "data", tmp_path / "in", tmp_path / "out"
    inbox.mkdir(exist_ok=True)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""runtime:
  data_dir: {data}
sources:
  orders_in: {{ type: file, topic: orders, path: "{inbox}/*.txt" }}
sinks:
  orders_out: {{ type: file, topics: [orders], path: {outbox}, roll_interval: 100ms }}
"""
    )
    return pipeline, data, inbox, outbox


def start(tmp_path, pipeline):
    """`sluice run` on the pipeline: the process and its REST API's URL."""
    proc, addresses = start_run(tmp_path, pipeline)
    return proc, addresses["rest"]


def finish(tmp_path, proc):
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0, (tmp_path / "run.stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def running(tmp_path):
    pipeline, data, inbox, outbox = write_pipeline(tmp_path)
    proc, url = start(tmp_path, pipeline)
    try:
        yield KafkaConnect(url=url), inbox, outbox, data
    finally:
        finish(tmp_path, proc)


def topic_size(data, topic):
    out = subprocess.run(
        [sluice_binary(), "--data-dir", str(data), "consume", topic, "--from-beginning", "--exit-at-end"],
        capture_output=True, text=True, check=True,
    )
    return len(out.stdout.splitlines())


def test_a_kafka_connect_client_lists_pauses_resumes_restarts_and_validates(running):
    client, inbox, outbox, data = running
    info = client.get_cluster_info()
    assert info["version"] and "kafka_cluster_id" in info
    assert sorted(client.list_connectors()) == ["orders_in", "orders_out"]
    expanded = client.list_connectors(expand="status")
    assert expanded["orders_out"]["status"]["type"] == "sink"
    assert expanded["orders_in"]["status"]["connector"]["state"] == "RUNNING"

    (inbox / "a.txt").write_text("".join(f"a-{i}\n" for i in range(100)))
    wait_until(lambda: len(lines_in(outbox)) == 100, what="the first lines to reach the sink")

    # Paused, the sink delivers nothing while the source goes on writing the topic.
    client.pause_connector("orders_out")
    wait_until(
        lambda: client.get_connector_status("orders_out")["tasks"][0]["state"] == "PAUSED",
        what="the sink's task to be PAUSED",
    )
    assert client.get_connector_status("orders_out")["connector"]["state"] == "PAUSED"
    (inbox / "b.txt").write_text("".join(f"b-{i}\n" for i in range(50)))
    wait_until(lambda: topic_size(data, "orders") == 150, what="the source to write while the sink is paused")
    time.sleep(1.0)
    assert len(lines_in(outbox)) == 100, "nothing is delivered while paused"

    client.resume_connector("orders_out")
    wait_until(lambda: len(lines_in(outbox)) == 150, what="the held records after resume")
    got = lines_in(outbox)
    assert len(set(got)) == 150, "every record once"

    # Nothing failed: onlyFailed restarts no task.
    body = client.restart_connector("orders_in", include_tasks=True, only_failed=True)
    assert body["tasks"][0]["state"] == "RUNNING"
    client.restart_connector_task("orders_in", 0)
    wait_until(
        lambda: client.get_connector_task_status("orders_in", 0)["state"] == "RUNNING",
        what="the restarted task to run",
    )
    (inbox / "c.txt").write_text("c-0\n")
    wait_until(lambda: len(lines_in(outbox)) == 151, what="a record after the restart")

    plugins = client.list_connector_plugins()
    assert {"class": "file", "type": "source", "version": info["version"]} in plugins
    checked = client.validate_connector_config("file", {"connector.class": "file", "pth": "/x"})
    assert checked["error_count"] >= 1
    assert any("pth" in e for c in checked["configs"] for e in c["value"]["errors"])


def test_connectors_created_over_rest_run_survive_a_reload_and_a_restart(tmp_path):
    pipeline, data, inbox, outbox = write_pipeline(tmp_path)
    copies = tmp_path / "copies"
    proc, url = start(tmp_path, pipeline)
    try:
        client = KafkaConnect(url=url)
        (inbox / "a.txt").write_text("".join(f"a-{i}\n" for i in range(20)))
        created = client.create_connector({
            "name": "orders_copy",
            "config": {
                "connector.class": "file",
                "topics": "orders",
                "path": str(copies),
                "roll_interval": "100ms",
                "tasks.max": "1",
            },
        })
        assert created["type"] == "sink" and created["tasks"] == [{"connector": "orders_copy", "task": 0}]
        wait_until(lambda: len(lines_in(copies)) == 20, what="the created sink to deliver the topic")
        assert sorted(client.list_connectors()) == ["orders_copy", "orders_in", "orders_out"]

        # Reconfigured over REST: it restarts from its committed position (nothing twice).
        updated = client.update_connector("orders_copy", {
            "connector.class": "file", "topics": "orders", "path": str(copies),
            "roll_interval": "200ms", "tasks.max": "1",
        })
        assert updated["config"]["roll_interval"] == "200ms"
        (inbox / "b.txt").write_text("".join(f"b-{i}\n" for i in range(10)))
        wait_until(lambda: len(lines_in(copies)) == 30, what="records after the reconfiguration")

        # A reload of the file (a change to orders_out) leaves the REST connector alone.
        pipeline.write_text(pipeline.read_text().replace("roll_interval: 100ms", "roll_interval: 150ms"))
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: client.get_connector_config("orders_out")["roll_interval"] == "150ms",
            what="the reload to apply",
        )
        assert "orders_copy" in client.list_connectors()
    finally:
        finish(tmp_path, proc)

    # Another process on the same data: the stored connector comes back and goes on.
    proc, url = start(tmp_path, pipeline)
    try:
        client = KafkaConnect(url=url)
        assert sorted(client.list_connectors()) == ["orders_copy", "orders_in", "orders_out"]
        assert client.get_connector_config("orders_copy")["roll_interval"] == "200ms"
        (inbox / "c.txt").write_text("".join(f"c-{i}\n" for i in range(5)))
        wait_until(lambda: len(lines_in(copies)) == 35, what="the restored sink to deliver")
        assert len(set(lines_in(copies))) == 35, "every record once"
        client.delete_connector("orders_copy")
        assert sorted(client.list_connectors()) == ["orders_in", "orders_out"]
    finally:
        finish(tmp_path, proc)
    proc, url = start(tmp_path, pipeline)
    try:
        assert sorted(KafkaConnect(url=url).list_connectors()) == ["orders_in", "orders_out"], "a deleted connector stays deleted"
    finally:
        finish(tmp_path, proc)
