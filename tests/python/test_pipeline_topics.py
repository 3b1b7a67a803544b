"""A real Kafka client's admin calls against the topics of a running `sluice run` pipeline."""

from confluent_kafka.admin import AdminClient

from conftest import start_run, stop_run, wait_until


def test_a_topic_deleted_under_a_running_pipeline_fails_its_source(tmp_path):
    data, inbox, outbox = tmp_path / "data", tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"""runtime:
  data_dir: {data}
  broker: {{ listen: 127.0.0.1:0 }}
sources:
  orders_in: {{ type: file, topic: orders, path: "{inbox}/*.txt" }}
sinks:
  orders_out: {{ type: file, topics: [orders], path: {outbox} }}
"""
    )
    (inbox / "a.txt").write_text("".join(f"before-{i}\n" for i in range(100)))
    stderr_path = tmp_path / "run.stderr"
    proc, addresses = start_run(tmp_path, pipeline)
    try:
        bootstrap = addresses.get("kafka")
        assert bootstrap, "the Kafka listener's address on stdout"
        wait_until(
            lambda: sum(p.read_text().count("\n") for p in outbox.glob("*.jsonl")) == 100,
            what="the first lines to reach the sink",
        )
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics(["orders"])["orders"].result(timeout=15)

        # The source still holds the deleted topic's partition: its next append must fail
        # with the reason, not write into files that are gone.
        (inbox / "b.txt").write_text("".join(f"after-{i}\n" for i in range(10)))
        wait_until(
            lambda: "topic `orders` was deleted" in stderr_path.read_text(),
            what="the source task to fail with the deletion",
        )
        failure = [l for l in stderr_path.read_text().splitlines() if "FAILED" in l]
        assert len(failure) == 1 and "connector orders_in task orders_in/0 FAILED" in failure[0], failure
        assert "appending to orders-0: topic `orders` was deleted" in failure[0], failure
        assert proc.poll() is None, "the rest of sluice run keeps running"
        topics = admin.list_topics(timeout=10).topics
        assert "orders" not in topics, "the deleted topic did not come back"
    finally:
        stop_run(proc)
