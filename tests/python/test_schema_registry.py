"""confluent-kafka's SchemaRegistryClient, AvroSerializer and AvroDeserializer against the
real `sluice registry` process: registration, the wire format, compatibility refusals, reader
schemas, config, deletes, authentication, restarts, and Avro records through the broker."""

import os
import shutil
import subprocess
import tempfile

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import sluice_binary

V1 = '{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}'
V2 = ('{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"},'
      '{"name":"email","type":["null","string"],"default":null}]}')
BAD = '{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}'


class RegistryProcess:
    def __init__(self, config_text=None):
        self.tmp = tempfile.mkdtemp(prefix="sluice-registry-test-")
        self.data = os.path.join(self.tmp, "data")
        self.config = None
        if config_text:
            self.config = os.path.join(self.tmp, "registry.yaml")
            with open(self.config, "w") as f:
                f.write(config_text)
        self.port = 0
        self.proc = None

    def start(self):
        args = [sluice_binary(), "--data-dir", self.data, "registry", "--listen", f"127.0.0.1:{self.port}"]
        if self.config:
            args += ["--config", self.config]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert "listening on" in line, line
        self.port = int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def registry():
    r = RegistryProcess().start()
    try:
        yield r
    finally:
        r.cleanup()


def test_serializer_and_deserializer_round_trip(registry):
    client = SchemaRegistryClient({"url": registry.url})
    ctx = SerializationContext("users", MessageField.VALUE)
    data = AvroSerializer(client, V1)({"id": 7, "name": "ada"}, ctx)
    assert data[0] == 0, "Confluent magic byte"
    schema_id = int.from_bytes(data[1:5], "big")
    assert client.get_latest_version("users-value").schema_id == schema_id
    assert AvroDeserializer(client)(data, ctx) == {"id": 7, "name": "ada"}
    # The same schema under another subject gets the same global id.
    assert client.register_schema("other-value", Schema(V1, "AVRO")) == schema_id


def test_incompatible_change_is_refused_with_409_and_reasons(registry):
    client = SchemaRegistryClient({"url": registry.url})
    client.register_schema("users-value", Schema(V1, "AVRO"))
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema("users-value", Schema(BAD, "AVRO"))
    assert err.value.http_status_code == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in str(err.value) and "age" in str(err.value)
    assert client.test_compatibility("users-value", Schema(V2, "AVRO")) is True
    assert client.test_compatibility("users-value", Schema(BAD, "AVRO")) is False
    assert client.get_versions("users-value") == [1], "the refused schema changed nothing"


def test_consumer_with_a_newer_reader_schema_reads_old_data(registry):
    client = SchemaRegistryClient({"url": registry.url})
    ctx = SerializationContext("users", MessageField.VALUE)
    old = AvroSerializer(client, V1)({"id": 1, "name": "old"}, ctx)
    client.register_schema("users-value", Schema(V2, "AVRO"))
    reader = AvroDeserializer(client, schema_str=V2)
    assert reader(old, ctx) == {"id": 1, "name": "old", "email": None}


def test_config_and_deletes(registry):
    client = SchemaRegistryClient({"url": registry.url})
    client.register_schema("s-value", Schema(V1, "AVRO"))
    client.set_compatibility("s-value", "FULL")
    assert client.get_compatibility("s-value") == "FULL"
    assert client.get_compatibility() == "BACKWARD"
    assert client.delete_subject("s-value") == [1]
    assert client.get_subjects() == []
    assert client.delete_subject("s-value", permanent=True) == [1]
    with pytest.raises(SchemaRegistryError) as err:
        client.get_latest_version("s-value")
    assert err.value.error_code == 40401


def test_state_survives_a_restart(registry):
    client = SchemaRegistryClient({"url": registry.url})
    sid = client.register_schema("keep-value", Schema(V1, "AVRO"))
    registry.stop()
    registry.start()
    client = SchemaRegistryClient({"url": registry.url})
    assert client.get_schema(sid).schema_str
    assert client.get_latest_version("keep-value").schema_id == sid


def test_authentication_when_configured():
    r = RegistryProcess("auth:\n  basic:\n    - username: ops\n      password: s3cret\n  bearer_tokens: [tok-1]\n").start()
    try:
        anonymous = SchemaRegistryClient({"url": r.url})
        with pytest.raises(SchemaRegistryError) as err:
            anonymous.get_subjects()
        assert err.value.http_status_code == 401
        wrong = SchemaRegistryClient({"url": r.url, "basic.auth.user.info": "ops:nope"})
        with pytest.raises(SchemaRegistryError):
            wrong.get_subjects()
        ok = SchemaRegistryClient({"url": r.url, "basic.auth.user.info": "ops:s3cret"})
        ok.register_schema("a-value", Schema(V1, "AVRO"))
        assert ok.get_subjects() == ["a-value"]
    finally:
        r.cleanup()


def test_refuses_a_public_address_without_auth():
    out = subprocess.run([sluice_binary(), "--data-dir", tempfile.mkdtemp(), "registry", "--listen", "0.0.0.0:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "without authentication" in out.stderr


def test_avro_records_through_the_broker(registry, broker):
    client = SchemaRegistryClient({"url": registry.url})
    serializer = AvroSerializer(client, V2)
    deserializer = AvroDeserializer(client)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        value = serializer({"id": i, "name": f"u{i}", "email": None}, SerializationContext("avro-users", MessageField.VALUE))
        producer.produce("avro-users", value=value)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-avro", "auto.offset.reset": "earliest"})
    consumer.subscribe(["avro-users"])
    got = []
    while len(got) < 20:
        msg = consumer.poll(5.0)
        assert msg is not None, f"only {len(got)} records arrived"
        got.append(deserializer(msg.value(), SerializationContext("avro-users", MessageField.VALUE)))
    consumer.close()
    assert sorted(r["id"] for r in got) == list(range(20))
