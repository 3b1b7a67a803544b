"""A pipeline on a three-node Apache Kafka cluster (replication factor 3,
`min.insync.replicas=2`) while one broker is killed with `kill -9` mid-transfer: the
pipeline goes on, nothing is lost, and nothing is written twice (the source is
`exactly_once`, the file sink exactly once). One cluster serves this file.

The source is `exactly_once` because a broker's death may take the deployment's group
coordinator with it: when the workers' session times out before they find the new one, the
group revokes the source task, which starts again from its committed positions, and an
at-least-once source would send again what it had not committed."""

import json
import threading
import time

from confluent_kafka.admin import AdminClient

from conftest import start_run, stop_run, wait_until
from test_kafka_cluster import offset_ranges, output_lines, write_lines


PIPELINE = """
runtime:
  data_dir: {dir}/data
  kafka:
    bootstrap_servers: "{bootstrap}"
    group: failover
topics:
  orders:
    partitions: 3
sources:
  orders_in:
    type: file
    path: {dir}/in/*.json
    topic: orders
    value_format: json
    exactly_once: true
sinks:
  orders_out:
    type: file
    topics: [orders]
    value_format: json
    path: {dir}/out
    roll_interval: 500ms
"""


def test_one_broker_of_three_killed_mid_transfer_loses_nothing(kafka_cluster, tmp_path):
    cluster = kafka_cluster
    (tmp_path / "in").mkdir()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(dir=tmp_path, bootstrap=cluster.bootstrap))
    proc, _ = start_run(tmp_path, pipeline)
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        topic = admin.list_topics(timeout=20).topics["orders"]
        assert len(topic.partitions) == 3
        assert all(len(p.replicas) == 3 for p in topic.partitions.values())
        # The broker leading partition 0 is the one killed.
        victim = topic.partitions[0].leader - 1
        files, per_file = 40, 500

        def feed():
            for i in range(files):
                write_lines(tmp_path / "in" / f"f{i:04}.json",
                            [json.dumps({"id": i * per_file + j}) for j in range(per_file)])
                time.sleep(0.1)
        feeder = threading.Thread(target=feed)
        feeder.start()
        time.sleep(1.5)
        cluster.kill9_node(victim)
        feeder.join()
        total = files * per_file
        wait_until(lambda: len(output_lines(tmp_path / "out")) >= total, timeout=120,
                   what="every record out with a broker down")
        time.sleep(2)
        ids = [json.loads(line)["id"] for line in output_lines(tmp_path / "out")]
        assert sorted(ids) == list(range(total)), "a record was lost or written twice"
        ranges = offset_ranges(tmp_path / "out", "orders")
        for p in range(3):
            mine = [(a, b) for q, a, b in ranges if q == p]
            # Commit markers and aborted records take offsets no file holds: no overlap.
            for (_, last), (first, _) in zip(mine, mine[1:]):
                assert first > last, f"partition {p}: an overlap in {mine}"
        assert proc.poll() is None, "sluice run exited"
    finally:
        assert stop_run(proc, timeout=60) == 0, (tmp_path / "run.stderr").read_text()[-3000:]
