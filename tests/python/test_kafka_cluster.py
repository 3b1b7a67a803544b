"""Sluice on a real Apache Kafka cluster (`runtime.kafka`): the same pipeline files as on the
embedded log, with topics, source positions (`<group>-offsets`, Kafka Connect's layout) and
sink positions (consumer group `connect-<sink>`) on the cluster, and several `sluice run`
processes of one `group` sharing the work through Kafka's group protocol.

One Apache Kafka node (KRaft, from the jars of scripts/kafka-jars.sh) serves the whole file;
each test uses its own topics and groups."""

import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import sluice_binary, start_run, stop_run, wait_until


@pytest.fixture
def work(tmp_path):
    yield tmp_path


def write_lines(path: Path, lines):
    """A whole file at once (written aside, then renamed), as a finished log file appears."""
    tmp = path.with_name("." + path.name)
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.rename(path)


def read_topic(bootstrap, topic, expect, timeout=30):
    """Every record of a topic (until `expect` arrived), with its headers."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.time() + timeout
    try:
        while len(got) < expect and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
    finally:
        c.close()
    return got


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def output_lines(out: Path, suffix=".jsonl"):
    return sorted(line for f in out.glob(f"*{suffix}") for line in f.read_text().splitlines())


QUICKSTART = """
runtime:
  data_dir: {dir}/data
{kafka}
topics:
  {topic}:
    partitions: 1
    config:
      retention.ms: 604800000
sources:
  orders_in:
    type: file
    path: {dir}/in/*.json
    topic: {topic}
    value_format: json
    errors:
      tolerance: all
      dead_letter_topic: {topic}-dlq
sinks:
  orders_out:
    type: file
    topics: [{topic}]
    value_format: json
    path: {dir}/out
    roll_interval: 1s
"""


def kafka_block(bootstrap, group):
    return f"  kafka:\n    bootstrap_servers: \"{bootstrap}\"\n    group: {group}\n"


def test_the_quickstart_on_the_cluster_gives_the_embedded_logs_output(kafka, work):
    lines = [json.dumps({"id": i, "sku": f"A-{i % 7}", "qty": i % 5}) for i in range(3000)]
    lines.insert(1234, "this line is not JSON")
    topic = "qs-orders"
    outputs = {}
    for side in ("embedded", "kafka"):
        d = work / side
        (d / "in").mkdir(parents=True)
        block = kafka_block(kafka.bootstrap, "qs") if side == "kafka" else ""
        pipeline = d / "pipeline.yaml"
        pipeline.write_text(QUICKSTART.format(dir=d, kafka=block, topic=topic))
        proc, _ = start_run(d, pipeline)
        try:
            write_lines(d / "in" / "orders.json", lines)
            wait_until(lambda: len(output_lines(d / "out")) >= 3000, timeout=60,
                       what=f"3000 lines out ({side})")
            time.sleep(1.5)  # nothing more arrives
            outputs[side] = output_lines(d / "out")
        finally:
            assert stop_run(proc) == 0, (d / "run.stderr").read_text()[-3000:]
    assert len(outputs["kafka"]) == 3000
    assert outputs["kafka"] == outputs["embedded"]
    # The topics and positions are the cluster's: the records, the dead letter with its
    # headers, the sink's group offsets, and the source's position in `qs-offsets`.
    assert len(read_topic(kafka.bootstrap, topic, 3000)) == 3000
    dlq = read_topic(kafka.bootstrap, f"{topic}-dlq", 1)
    assert [m.value() for m in dlq] == [b"this line is not JSON"]
    headers = dict(dlq[0].headers())
    assert headers["sluice.error.stage"] == b"converter"
    assert headers["sluice.error.connector"] == b"orders_in"
    assert committed(kafka.bootstrap, "connect-orders_out", topic, 1) == {0: 3000}
    offsets = read_topic(kafka.bootstrap, "qs-offsets", 1)
    key = json.loads(offsets[-1].key())
    assert key[0] == "orders_in" and key[1]["stream"].startswith("file:")
    assert json.loads(offsets[-1].value())["offset"] > 0
    # Nothing of the pipeline went to the local data directory's log.
    assert not (work / "kafka" / "data" / "topics" / topic).exists()
    assert (work / "embedded" / "data" / "topics" / topic).exists()


def test_a_restart_on_the_cluster_resumes_from_the_clusters_positions(kafka, work):
    d = work / "restart"
    (d / "in").mkdir(parents=True)
    pipeline = d / "pipeline.yaml"
    pipeline.write_text(QUICKSTART.format(dir=d, kafka=kafka_block(kafka.bootstrap, "rs"), topic="rs-orders"))
    proc, _ = start_run(d, pipeline)
    try:
        write_lines(d / "in" / "a.json", [json.dumps({"id": i}) for i in range(1000)])
        wait_until(lambda: len(output_lines(d / "out")) >= 1000, timeout=60, what="the first file out")
    finally:
        assert stop_run(proc) == 0
    # The local data directory is wiped: positions come from the cluster.
    shutil.rmtree(d / "data")
    proc, _ = start_run(d, pipeline)
    try:
        write_lines(d / "in" / "b.json", [json.dumps({"id": i}) for i in range(1000, 1500)])
        wait_until(lambda: len(output_lines(d / "out")) >= 1500, timeout=60, what="the second file out")
        time.sleep(2)
    finally:
        assert stop_run(proc) == 0
    ids = sorted(json.loads(line)["id"] for line in output_lines(d / "out"))
    assert ids == list(range(1500)), "a record was lost or delivered twice across the restart"


AVRO = """
runtime:
  data_dir: {dir}/data
{kafka}
sources:
  orders_in:
    type: file
    path: {dir}/in/*.json
    topic: {topic}
    transforms:
      - {{ type: value_to_key, fields: [id] }}
    key_format: avro
    key_schema: '{{"type": "record", "name": "OrderKey", "fields": [{{"name": "id", "type": "long"}}]}}'
    value_format: avro
    value_schema: '{{"type": "record", "name": "Order", "namespace": "shop", "fields": [{{"name": "id", "type": "long"}}, {{"name": "sku", "type": "string"}}, {{"name": "qty", "type": "int"}}, {{"name": "note", "type": ["null", "string"], "default": null}}]}}'
    errors: {{ tolerance: all, dead_letter_topic: {topic}-dlq }}
sinks:
  orders_archive:
    type: file
    topics: [{topic}]
    key_format: avro
    value_format: avro
    value_schema: '{{"type": "record", "name": "Order", "namespace": "shop", "fields": [{{"name": "id", "type": "long"}}, {{"name": "sku", "type": "string"}}, {{"name": "qty", "type": "long"}}, {{"name": "source", "type": "string", "default": "shop"}}]}}'
    format: avro
    path: {dir}/out
    roll_interval: 1s
"""


def avro_records(out: Path):
    records = []
    for f in sorted(out.glob("*.avro")):
        with open(f, "rb") as fh:
            records.extend(fastavro.reader(fh))
    return sorted(records, key=lambda r: r["id"])


def test_the_avro_pipeline_on_the_cluster_gives_the_embedded_logs_output(kafka, work):
    lines = [json.dumps({"id": i, "sku": f"S-{i}", "qty": i % 9, "note": None if i % 2 else "gift"})
             for i in range(2000)]
    lines.insert(10, json.dumps({"id": "not a number"}))
    outputs = {}
    for side in ("embedded", "kafka"):
        d = work / side
        (d / "in").mkdir(parents=True)
        block = kafka_block(kafka.bootstrap, "avro") if side == "kafka" else ""
        pipeline = d / "pipeline.yaml"
        pipeline.write_text(AVRO.format(dir=d, kafka=block, topic="avro-orders"))
        proc, _ = start_run(d, pipeline)
        try:
            write_lines(d / "in" / "orders.json", lines)
            wait_until(lambda: len(avro_records(d / "out")) >= 2000, timeout=60,
                       what=f"2000 Avro records out ({side})")
            time.sleep(1.5)
            outputs[side] = avro_records(d / "out")
        finally:
            assert stop_run(proc) == 0, (d / "run.stderr").read_text()[-3000:]
    assert len(outputs["kafka"]) == 2000
    assert outputs["kafka"] == outputs["embedded"]
    assert outputs["kafka"][3] == {"id": 3, "sku": "S-3", "qty": 3, "source": "shop"}
    # On the cluster the records are Confluent's wire format (magic byte, schema id).
    records = read_topic(kafka.bootstrap, "avro-orders", 2000)
    assert len(records) == 2000 and all(m.value()[0] == 0 for m in records)
    assert len(read_topic(kafka.bootstrap, "avro-orders-dlq", 1)) == 1


SHARED = """
runtime:
  data_dir: {dir}/data-{worker}
  kafka:
    bootstrap_servers: "{bootstrap}"
    group: {group}
topics:
  {topic}:
    partitions: 2
sources:
  events_in:
    type: file
    path: {dir}/in/*.json
    topic: {topic}
    value_format: json
    exactly_once: {exactly_once}
sinks:
  {sink}:
    type: file
    topics: [{topic}]
    value_format: json
    path: {dir}/out
    roll_interval: 500ms
"""


def task_state(rest, connector):
    """A worker's answer for task 0: its state and the worker running it (Connect's
    `worker_id`, the REST address)."""
    import urllib.request
    with urllib.request.urlopen(f"{rest}/connectors/{connector}/status", timeout=10) as r:
        task = json.loads(r.read())["tasks"][0]
        return task["state"], task["worker_id"]


def runs_on_one(answers, rests):
    """The worker every worker names as running the task (RUNNING), or None. Were it run on
    two, each would name itself."""
    if any(a is None for a in answers.values()):
        return None
    ids = {a[1] for a in answers.values()}
    if len(ids) != 1 or any(a[0] != "RUNNING" for a in answers.values()):
        return None
    (worker_id,) = ids
    return next((n for n, url in rests.items() if url.endswith("//" + worker_id)), None)


def offset_ranges(out: Path, topic):
    """(partition, first, last) of every finished file the sink wrote."""
    ranges = []
    for f in out.glob(f"{topic}-*.jsonl"):
        _, partition, first, last = f.stem.rsplit("-", 3)
        ranges.append((int(partition), int(first), int(last)))
    return sorted(ranges)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_two_workers_share_a_pipeline_and_one_survives_the_others_kill_9(kafka, work, exactly_once):
    suffix = "eos" if exactly_once else "alo"
    topic, group = f"shared-events-{suffix}", f"share-{suffix}"
    (work / "in").mkdir()
    workers = {}
    for name in ("a", "b"):
        p = work / f"{name}.yaml"
        p.write_text(SHARED.format(dir=work, worker=name, bootstrap=kafka.bootstrap, group=group, topic=topic,
                                   exactly_once=str(exactly_once).lower(), sink=f"events_out_{suffix}"))
        (work / name).mkdir()
        workers[name] = start_run(work / name, p)
    try:
        # The source's one task runs on exactly one worker; the other waits, UNASSIGNED.
        def states():
            return {n: task_state(rest["rest"], "events_in") for n, (_, rest) in workers.items()}
        rests = {n: rest["rest"] for n, (_, rest) in workers.items()}
        # Every worker answers where the task runs (Connect's status topic), and all agree.
        wait_until(lambda: runs_on_one(states(), rests) is not None, timeout=60,
                   what="the source task to run on one worker")
        holder = runs_on_one(states(), rests)
        survivor = "b" if holder == "a" else "a"
        # Files keep arriving while the worker running the source is killed.
        files, per_file = 60, 500
        stop = threading.Event()

        def feed():
            for i in range(files):
                write_lines(work / "in" / f"f{i:04}.json",
                            [json.dumps({"id": i * per_file + j}) for j in range(per_file)])
                time.sleep(0.05)
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(1.0)
        workers[holder][0].kill()  # kill -9
        workers[holder][0].wait()
        feeder.join()
        total = files * per_file
        # Within the session timeout the survivor takes the source task and the dead
        # worker's partitions, and everything arrives.
        wait_until(lambda: len({json.loads(l)["id"] for l in output_lines(work / "out")}) >= total,
                   timeout=90, what="every record out after the kill")
        assert task_state(workers[survivor][1]["rest"], "events_in") == ("RUNNING", rests[survivor].split("//")[1])
        time.sleep(2)
        ids = [json.loads(line)["id"] for line in output_lines(work / "out")]
        assert set(ids) == set(range(total)), "a record was lost"
        # The file sink wrote every offset of every partition exactly once: its files' ranges
        # tile each partition from 0 without overlap, through both workers' files (and,
        # without transactions, without gap: with them, commit markers and aborted records
        # take offsets no file holds).
        ranges = offset_ranges(work / "out", topic)
        for p in (0, 1):
            mine = [(a, b) for q, a, b in ranges if q == p]
            # (With transactions, a partition may begin with the killed worker's aborted
            # records and their marker: no file holds those offsets.)
            assert mine and (mine[0][0] == 0 or exactly_once), (p, mine)
            for (_, last), (first, _) in zip(mine, mine[1:]):
                assert first > last, f"partition {p}: an overlap in {mine}"
                assert exactly_once or first == last + 1, f"partition {p}: a gap in {mine}"
        if not exactly_once:
            assert sum(last - first + 1 for _, first, last in ranges) == len(ids)
        if exactly_once:
            # Records and positions were committed together: what the killed worker's
            # source had sent but not committed was aborted, and nothing is there twice.
            assert len(ids) == total, f"{len(ids) - total} records twice"
        else:
            # What is in the topic twice is only what the killed source had written and not
            # yet committed, sent again once by the survivor (the source is at least once
            # without `exactly_once`); the sink wrote no offset twice (above).
            from collections import Counter
            assert max(Counter(ids).values()) <= 2, "a record written three times"
    finally:
        for proc, _ in workers.values():
            if proc.poll() is None:
                stop_run(proc)


def test_runtime_kafka_settings_are_checked_before_anything_starts(work):
    bad = work / "bad.yaml"
    bad.write_text(
        "runtime:\n  kafka:\n    bootstrap_servers: \"kafka-1\"\n    group: \"has space\"\n"
        "    security: { protocol: SASL_SSL, username: sluice }\n"
        "  broker: { listen: 127.0.0.1:0 }\n"
        "sources: {}\nsinks: {}\n")
    done = subprocess.run([sluice_binary(), "run", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    err = done.stderr
    assert "`kafka-1` is not `host:port`" in err, err
    assert "`group`: `has space`" in err, err
    assert "needs `sasl_mechanism`" in err, err
    assert "needs `username` and `password`" in err, err
    assert "remove one" in err, err
    # Each problem points at its line.
    assert "bad.yaml:3:" in err.split("`kafka-1` is not")[0].splitlines()[-1], err
    assert "bad.yaml:4:" in err.split("`has space`")[0].splitlines()[-1], err


def test_a_cluster_that_does_not_answer_stops_sluice_run_with_the_reason(work):
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = work / "p.yaml"
    p.write_text(f"runtime:\n  data_dir: {work}/data\n  kafka: {{ bootstrap_servers: \"127.0.0.1:{port}\", group: g }}\n"
                 f"sources: {{ s: {{ type: file, path: \"{work}/in/*.json\", topic: t }} }}\nsinks: {{}}\n")
    started = time.time()
    done = subprocess.run([sluice_binary(), "run", str(p)], capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr and "bootstrap_servers" in done.stderr, done.stderr
    assert time.time() - started < 60


REGISTRY_WORKER = """
runtime:
  data_dir: {dir}/data-{worker}
  registry: {{ listen: "127.0.0.1:0" }}
  kafka:
    bootstrap_servers: "{bootstrap}"
    group: registry-share
sources:
  idle: {{ type: file, path: "{dir}/in/*.json", topic: idle }}
sinks: {{}}
"""


def http(method, url, body=None):
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def record_schema(name, field):
    return json.dumps({"type": "record", "name": name, "fields": [{"name": field, "type": "long"}]})


def test_two_workers_registries_share_the_clusters_schemas_topic(kafka, work):
    (work / "in").mkdir()
    workers = {}
    for name in ("a", "b"):
        p = work / f"{name}.yaml"
        p.write_text(REGISTRY_WORKER.format(dir=work, worker=name, bootstrap=kafka.bootstrap))
        (work / name).mkdir()
        workers[name] = start_run(work / name, p)
    try:
        urls = {n: addrs["registry"] for n, (_, addrs) in workers.items()}
        results = {}

        def register(worker, i):
            # Each worker registers its own schemas and, at the same moments, the same ones.
            own = http("POST", f"{urls[worker]}/subjects/{worker}-{i}-value/versions",
                       {"schema": record_schema(f"R{worker}{i}", "f")})
            same = http("POST", f"{urls[worker]}/subjects/shared-{i}-value/versions",
                        {"schema": record_schema(f"Shared{i}", "g")})
            results[(worker, i)] = (own, same)

        threads = [threading.Thread(target=register, args=(w, i)) for i in range(15) for w in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (worker, i), (own, same) in results.items():
            assert own[0] == 200 and same[0] == 200, (worker, i, own, same)
        own_ids = [own[1]["id"] for own, _ in results.values()]
        assert len(set(own_ids)) == 30, "two different schemas got one id"
        for i in range(15):
            # The same schema under one subject: one id and one version, whichever worker.
            assert results[("a", i)][1][1]["id"] == results[("b", i)][1][1]["id"]
        shared_ids = {results[("a", i)][1][1]["id"] for i in range(15)}
        assert not shared_ids & set(own_ids)
        # Each worker serves what the other registered.
        wait_until(lambda: http("GET", f"{urls['a']}/subjects")[1] == http("GET", f"{urls['b']}/subjects")[1],
                   timeout=20, what="both registries to list the same subjects")
        subjects = http("GET", f"{urls['a']}/subjects")[1]
        # (Other tests of this file registered theirs on the same cluster.)
        assert len([s for s in subjects if s.startswith(("a-", "b-", "shared-"))]) == 45
        for i in (0, 7, 14):
            for worker in ("a", "b"):
                versions = http("GET", f"{urls[worker]}/subjects/shared-{i}-value/versions")[1]
                assert versions == [1], (worker, i, versions)
        some_id = own_ids[0]
        assert http("GET", f"{urls['a']}/schemas/ids/{some_id}")[1] == http("GET", f"{urls['b']}/schemas/ids/{some_id}")[1]
        # In Confluent's record format on `_schemas`.
        records = read_topic(kafka.bootstrap, "_schemas", 45)
        keys = [json.loads(m.key()) for m in records]
        assert all(k["keytype"] == "SCHEMA" and k["magic"] == 1 for k in keys)
        assert records[0].key().decode().endswith(',"magic":1}'), "Confluent's key bytes, for compaction"
        value = json.loads(records[0].value())
        assert {"subject", "version", "id", "schema", "deleted"} <= set(value)
        # A worker restarted with its data directory wiped rebuilds from the topic.
        assert stop_run(workers["a"][0]) == 0
        shutil.rmtree(work / "data-a")
        workers["a"] = start_run(work / "a", work / "a.yaml")
        url = workers["a"][1]["registry"]
        assert sorted(http("GET", f"{url}/subjects")[1]) == sorted(subjects)
        assert http("GET", f"{url}/schemas/ids/{some_id}")[1] == http("GET", f"{urls['b']}/schemas/ids/{some_id}")[1]
        # And registers after the ids the cluster handed out.
        status, new = http("POST", f"{url}/subjects/after-restart-value/versions", {"schema": record_schema("After", "h")})
        assert status == 200 and new["id"] > max(own_ids + list(shared_ids))
    finally:
        for proc, _ in workers.values():
            if proc.poll() is None:
                stop_run(proc)


DEPLOYMENT = """
runtime:
  data_dir: {dir}/data-{worker}
  kafka:
    bootstrap_servers: "{bootstrap}"
    group: rest-deployment
topics:
  rest-events:
    partitions: 2
sources:
  idle_in:
    type: file
    path: {dir}/idle/*.json
    topic: rest-events
    value_format: json
{sources}
sinks: {{}}
"""

RELOADED_SOURCE = """  reloaded_in:
    type: file
    path: {dir}/reloaded/*.json
    topic: rest-events
    value_format: json
"""


def rest(method, url, body=None):
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def connector_states(urls, name):
    """Each worker's view of a connector: its state and its task's state (None: unknown)."""
    out = {}
    for w, url in urls.items():
        status, body = rest("GET", f"{url}/connectors/{name}/status")
        if status == 200:
            task = body["tasks"][0] if body["tasks"] else {}
            out[w] = (body["connector"]["state"], task.get("state"), task.get("worker_id"))
        else:
            out[w] = None
    return out


def test_connectors_created_over_rest_on_one_worker_run_on_the_deployment(kafka, work):
    """Kafka Connect's distributed mode: a connector created, paused or deleted over the REST
    API of any worker is in `<group>-configs`, every worker applies it, and the group decides
    where its task runs; a worker restarted with no data directory gets them back from the
    cluster, and a source added to the file by a reload gets a task on one worker."""
    for d in ("in", "reloaded", "out", "idle"):
        (work / d).mkdir()
    workers = {}
    for name in ("a", "b"):
        p = work / f"{name}.yaml"
        p.write_text(DEPLOYMENT.format(dir=work, worker=name, bootstrap=kafka.bootstrap, sources=""))
        (work / name).mkdir()
        workers[name] = start_run(work / name, p)
    try:
        urls = {n: addrs["rest"] for n, (_, addrs) in workers.items()}
        status, created = rest("POST", f"{urls['a']}/connectors", {"name": "events_in", "config": {
            "connector.class": "file", "path": f"{work}/in/*.json", "topic": "rest-events",
            "value_format": "json"}})
        assert status == 201, created
        status, created = rest("POST", f"{urls['b']}/connectors", {"name": "events_out", "config": {
            "connector.class": "file", "topics": "rest-events", "path": f"{work}/out",
            "value_format": "json", "roll_interval": "300ms", "tasks.max": "1"}})
        assert status == 201, created
        # Both workers know both connectors; the source's task runs on exactly one of them.
        wait_until(lambda: all(sorted(rest("GET", f"{u}/connectors")[1]) == ["events_in", "events_out", "idle_in"]
                               for u in urls.values()), timeout=30, what="both workers to list both connectors")
        wait_until(lambda: runs_on_one({w: s and s[1:] for w, s in connector_states(urls, "events_in").items()}, urls),
                   timeout=60, what="the source's task on one worker, named by both")
        assert rest("GET", f"{urls['a']}/connectors/events_out/config")[1]["roll_interval"] == "300ms"
        write_lines(work / "in" / "first.json", [json.dumps({"id": i}) for i in range(300)])
        wait_until(lambda: len(output_lines(work / "out")) >= 300, timeout=60, what="the first records through")

        # A task restart asked of the worker that does not run it restarts it where it runs.
        runner = runs_on_one({w: s and s[1:] for w, s in connector_states(urls, "events_in").items()}, urls)
        other = "b" if runner == "a" else "a"

        def restarts(url):
            import urllib.request
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("sluice_task_restarts_total") and 'connector="events_in"' in line:
                        return float(line.split()[-1])
            return 0.0
        before = restarts(urls[runner])
        assert rest("POST", f"{urls[other]}/connectors/events_in/tasks/0/restart")[0] == 204
        wait_until(lambda: restarts(urls[runner]) == before + 1, timeout=20, what="the restart where the task runs")
        assert restarts(urls[other]) == 0.0
        wait_until(lambda: runs_on_one({w: s and s[1:] for w, s in connector_states(urls, "events_in").items()}, urls) == runner,
                   timeout=20, what="the task running again on the same worker")

        # The same name created on both workers at once: one wins, the other is refused
        # (409), as Connect's leader refuses it; both workers then have the winner.
        results = {}

        def create_dup(w):
            results[w] = rest("POST", f"{urls[w]}/connectors", {"name": "dup", "config": {
                "connector.class": "file", "path": f"{work}/idle/{w}-*.json", "topic": "rest-events",
                "value_format": "json"}})
        threads = [threading.Thread(target=create_dup, args=(w,)) for w in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r[0] for r in results.values()) == [201, 409], results
        winner = next(w for w, r in results.items() if r[0] == 201)
        wait_until(lambda: all(rest("GET", f"{u}/connectors/dup/config")[1].get("path") == f"{work}/idle/{winner}-*.json"
                               for u in urls.values()), timeout=30, what="the winner on both workers")
        assert rest("DELETE", f"{urls[winner]}/connectors/dup")[0] == 204

        # Paused on b: paused on both; no record goes through; resumed on a.
        assert rest("PUT", f"{urls['b']}/connectors/events_in/pause")[0] == 202
        wait_until(lambda: all(s and s[0] == "PAUSED" for s in connector_states(urls, "events_in").values()),
                   timeout=30, what="the pause to reach both workers")
        time.sleep(1)  # a poll under way when the pause came may still hand records on
        write_lines(work / "in" / "second.json", [json.dumps({"id": 300 + i}) for i in range(200)])
        time.sleep(3)
        assert len(output_lines(work / "out")) == 300, "a paused source read a file"
        assert rest("PUT", f"{urls['a']}/connectors/events_in/resume")[0] == 202
        wait_until(lambda: len(output_lines(work / "out")) >= 500, timeout=60, what="records after the resume")

        # Reconfigured on a (a second sink task): applied on b too.
        status, _ = rest("PUT", f"{urls['a']}/connectors/events_out/config", {
            "connector.class": "file", "topics": "rest-events", "path": f"{work}/out",
            "value_format": "json", "roll_interval": "200ms", "tasks.max": "1"})
        assert status == 200
        wait_until(lambda: rest("GET", f"{urls['b']}/connectors/events_out/config")[1].get("roll_interval") == "200ms",
                   timeout=30, what="the new config on the other worker")

        # The sink's positions are its consumer group's on the cluster.
        def sink_offsets():
            body = rest("GET", f"{urls['b']}/connectors/events_out/offsets")[1]
            return sum(o["offset"]["kafka_offset"] for o in body["offsets"])
        wait_until(lambda: sink_offsets() == 500, timeout=30, what="the sink's committed offsets")

        # Offsets over REST (KIP-875) on the cluster: only while STOPPED (on every worker),
        # then in the sink's consumer group.
        p0 = {"kafka_topic": "rest-events", "kafka_partition": 0}
        patch = {"offsets": [{"partition": p0, "offset": {"kafka_offset": 100}}]}
        assert rest("PATCH", f"{urls['b']}/connectors/events_out/offsets", patch)[0] == 400
        assert rest("PUT", f"{urls['a']}/connectors/events_out/stop")[0] == 204
        wait_until(lambda: all(s and s[0] == "STOPPED" for s in connector_states(urls, "events_out").values()),
                   timeout=30, what="the sink stopped on both workers")

        def group_offsets(url):
            body = rest("GET", f"{url}/connectors/events_out/offsets")[1]
            return {o["partition"]["kafka_partition"]: o["offset"]["kafka_offset"] for o in body["offsets"]}
        before = group_offsets(urls["a"])
        assert sum(before.values()) == 500, before
        status, body = rest("PATCH", f"{urls['b']}/connectors/events_out/offsets", patch)
        assert status == 200, body
        assert group_offsets(urls["a"]) == {**before, 0: 100}
        theirs = committed(kafka.bootstrap, "connect-events_out", "rest-events", 2)
        assert {p: o for p, o in theirs.items() if o >= 0} == {**before, 0: 100}
        # The sink's lag on `/metrics` is the cluster's: each partition's end less the group's offset.

        def sink_lag(url):
            import urllib.request
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
                return {int(line.split('partition="')[1].split('"')[0]): float(line.split()[-1])
                        for line in r.read().decode().splitlines()
                        if line.startswith("sluice_sink_lag_records") and 'connector="events_out"' in line}
        assert sink_lag(urls["a"]) == {0: max(before.get(0, 0) - 100, 0), 1: 0}, (sink_lag(urls["a"]), before)
        status, body = rest("DELETE", f"{urls['a']}/connectors/events_out/offsets")
        assert status == 200 and "reset" in body["message"], body
        assert group_offsets(urls["b"]) == {0: 0, 1: 0}
        bad = {"offsets": [{"partition": {"kafka_topic": "rest-events", "kafka_partition": 7}, "offset": {"kafka_offset": 1}}]}
        assert rest("PATCH", f"{urls['a']}/connectors/events_out/offsets", bad)[0] == 400
        assert rest("PUT", f"{urls['b']}/connectors/events_out/resume")[0] == 202

        # A source added to both files by a reload gets a lease at once, not at a restart.
        for name, (proc, _) in workers.items():
            p = work / f"{name}.yaml"
            p.write_text(DEPLOYMENT.format(dir=work, worker=name, bootstrap=kafka.bootstrap,
                                           sources=RELOADED_SOURCE.format(dir=work)))
            proc.send_signal(signal.SIGHUP)
        wait_until(lambda: runs_on_one({w: s and s[1:] for w, s in connector_states(urls, "reloaded_in").items()}, urls),
                   timeout=60, what="the reloaded source's task on one worker, named by both")
        write_lines(work / "reloaded" / "r.json", [json.dumps({"id": 1000 + i}) for i in range(100)])
        wait_until(lambda: len(output_lines(work / "out")) >= 600, timeout=60, what="the reloaded source's records")

        # A worker restarted with its data directory wiped gets the connectors from the cluster.
        assert stop_run(workers["a"][0]) == 0
        shutil.rmtree(work / "data-a")
        workers["a"] = start_run(work / "a", work / "a.yaml")
        urls["a"] = workers["a"][1]["rest"]
        assert sorted(rest("GET", f"{urls['a']}/connectors")[1]) == ["events_in", "events_out", "idle_in", "reloaded_in"]
        assert rest("GET", f"{urls['a']}/connectors/events_out/config")[1]["roll_interval"] == "200ms"

        # A source's positions on the cluster, reset while it is stopped.
        streams = rest("GET", f"{urls['b']}/connectors/events_in/offsets")[1]["offsets"]
        assert len(streams) == 2 and all("stream" in o["partition"] for o in streams), streams
        assert rest("PUT", f"{urls['b']}/connectors/events_in/stop")[0] == 204
        wait_until(lambda: all(s and s[0] == "STOPPED" for s in connector_states(urls, "events_in").values()),
                   timeout=30, what="the source stopped on both workers")
        assert rest("DELETE", f"{urls['a']}/connectors/events_in/offsets")[0] == 200
        assert rest("GET", f"{urls['b']}/connectors/events_in/offsets")[1]["offsets"] == []

        # Deleted on the restarted worker: gone from both.
        assert rest("DELETE", f"{urls['a']}/connectors/events_in")[0] == 204
        wait_until(lambda: all(rest("GET", f"{u}/connectors/events_in/status")[0] == 404 for u in urls.values()),
                   timeout=30, what="the deletion on both workers")
        ids = [json.loads(line)["id"] for line in output_lines(work / "out")]
        assert set(ids) == set(range(500)) | set(range(1000, 1100))
        # In Kafka Connect's layout on `<group>-configs`.
        keys = {m.key().decode() for m in read_topic(kafka.bootstrap, "rest-deployment-configs", 10, timeout=10)}
        assert {"connector-events_in", "connector-events_out", "target-state-events_in"} <= keys
    finally:
        for proc, _ in workers.values():
            if proc.poll() is None:
                stop_run(proc)
