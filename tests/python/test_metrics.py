"""`/metrics` of a `sluice run` with its Kafka listener and schema registry, driven by real
clients: the broker's requests by API and outcome and its bytes, the registry's requests by
route and status, the log's fsyncs; `promtool check metrics` accepts the whole exposition."""

import shutil
import subprocess
import urllib.request

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from conftest import start_run, stop_run


def samples(text):
    """{'name{labels}': value} for every sample line of a Prometheus exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_broker_registry_and_log_metrics_count_what_real_clients_did(tmp_path):
    data, inbox, outbox = tmp_path / "data", tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    pipeline = tmp_path / "shop.yaml"
    pipeline.write_text(
        f"""runtime:
  data_dir: {data}
  broker: {{ listen: 127.0.0.1:0 }}
  registry: {{ listen: 127.0.0.1:0 }}
sources:
  orders_in: {{ type: file, topic: orders, path: "{inbox}/*.txt" }}
sinks:
  orders_out: {{ type: file, topics: [orders], path: {outbox} }}
"""
    )
    proc, addresses = start_run(tmp_path, pipeline)
    try:
        assert {"kafka", "registry"} <= addresses.keys(), f"the listeners' addresses on stdout: {addresses}"

        producer = Producer({"bootstrap.servers": addresses["kafka"], "linger.ms": 0})
        for i in range(20):
            producer.produce("events", key=b"k", value=f"event-{i}".encode())
            producer.flush(10)
        registry = SchemaRegistryClient({"url": addresses["registry"]})
        schema = '{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}'
        registry.register_schema("orders-value", Schema(schema, "AVRO"))
        with pytest.raises(Exception):
            registry.get_version("missing-value", 1)

        text = urllib.request.urlopen(f"{addresses['rest']}/metrics", timeout=10).read().decode()
        s = samples(text)
        assert s['sluice_broker_requests_total{api="Produce",outcome="ok"}'] == 20, text
        assert s['sluice_broker_requests_total{api="Metadata",outcome="ok"}'] >= 1
        assert s['sluice_broker_request_duration_seconds_count{api="Produce"}'] == 20
        assert s["sluice_broker_bytes_in_total"] > 20 * len("event-0")
        assert s["sluice_broker_bytes_out_total"] > 0
        assert s["sluice_broker_connections"] >= 1
        route = '/subjects/{subject}/versions'
        assert s[f'sluice_registry_requests_total{{route="{route}",method="POST",status="200"}}'] == 1
        assert s[
            'sluice_registry_requests_total{route="/subjects/{subject}/versions/{version}",method="GET",status="404"}'
        ] == 1
        # Every acknowledged produce (acks=all) and the registered schema were fsynced.
        assert s["sluice_log_fsync_duration_seconds_count"] >= 21

        if shutil.which("promtool"):
            checked = subprocess.run(
                ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        stop_run(proc)
