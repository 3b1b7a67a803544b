"""Python confluent-kafka (librdkafka 2.16) against the real broker: producers with acks=all
and idempotence, consumer groups, rebalances, committed offsets across restarts, timestamps."""

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import wait_until


def create_topic(bootstrap, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])
    futures[name].result(timeout=15)


def produce_all(bootstrap, topic, messages, **conf):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    errors, delivered = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or (msg.partition(), msg.offset(), msg.value()))

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages left unsent"
    assert errors == []
    return delivered


def consume(consumer, want, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got.append(msg)
    return got


def test_acks_all_producer_and_consumer_round_trip(broker):
    create_topic(broker.bootstrap, "orders", partitions=3)
    messages = [(f"k{i % 10}".encode(), f"order-{i}".encode()) for i in range(3000)]
    delivered = produce_all(broker.bootstrap, "orders", messages, acks="all", **{"compression.type": "lz4"})
    assert len(delivered) == 3000
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-rt", "auto.offset.reset": "earliest"})
    consumer.subscribe(["orders"])
    got = consume(consumer, 3000)
    consumer.close()
    assert sorted(m.value() for m in got) == sorted(v for _, v in messages)
    # One key, one partition, and its values in produce order.
    by_key = {}
    for m in got:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in by_key.values())


def test_idempotent_producer_stores_each_message_once(broker):
    create_topic(broker.bootstrap, "idem", partitions=2)
    messages = [(None, f"m-{i}".encode()) for i in range(5000)]
    delivered = produce_all(broker.bootstrap, "idem", messages, **{"enable.idempotence": True, "acks": "all"})
    offsets = {(p, o) for p, o, _ in delivered}
    assert len(offsets) == 5000, "every message got its own offset"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-idem", "auto.offset.reset": "earliest"})
    consumer.subscribe(["idem"])
    got = consume(consumer, 5000)
    time.sleep(1)
    extra = consumer.poll(1.0)
    consumer.close()
    values = [m.value() for m in got]
    assert len(values) == len(set(values)) == 5000
    assert extra is None or extra.error() is not None, "nothing beyond the 5000 messages"


def test_group_of_two_splits_partitions_and_survivor_takes_over(broker):
    create_topic(broker.bootstrap, "work", partitions=4)
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "g-split", "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "enable.auto.commit": False}
    seen = {"a": [], "b": []}
    assigned = {"a": set(), "b": set()}
    stop = {"a": threading.Event(), "b": threading.Event()}

    def run(name):
        c = Consumer(conf)

        def on_assign(consumer, partitions):
            assigned[name] = {p.partition for p in partitions}

        c.subscribe(["work"], on_assign=on_assign)
        while not stop[name].is_set():
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            seen[name].append(msg.value())
            c.commit(message=msg, asynchronous=False)
        c.close()  # LeaveGroup: the other member gets this one's partitions

    threads = {n: threading.Thread(target=run, args=(n,)) for n in ("a", "b")}
    threads["a"].start()
    wait_until(lambda: len(assigned["a"]) == 4, what="first member owning all 4 partitions")
    threads["b"].start()
    wait_until(lambda: len(assigned["b"]) > 0 and len(assigned["a"]) + len(assigned["b"]) == 4 and not (assigned["a"] & assigned["b"]),
               what="two members splitting the partitions")
    produce_all(broker.bootstrap, "work", [(f"key-{i}".encode(), f"w-{i}".encode()) for i in range(2000)])
    wait_until(lambda: len(seen["a"]) + len(seen["b"]) >= 2000, what="all 2000 consumed")
    assert seen["a"] and seen["b"], "both members got work"
    assert len(set(seen["a"]) | set(seen["b"])) == 2000
    assert not set(seen["a"]) & set(seen["b"]), "no message seen by both"

    stop["b"].set()
    threads["b"].join(timeout=30)
    wait_until(lambda: len(assigned["a"]) == 4, what="survivor taking all partitions back")
    produce_all(broker.bootstrap, "work", [(f"key-{i}".encode(), f"late-{i}".encode()) for i in range(400)])
    wait_until(lambda: sum(1 for v in seen["a"] if v.startswith(b"late-")) == 400, what="survivor consuming the late messages")
    stop["a"].set()
    threads["a"].join(timeout=30)


def test_consumers_started_together_share_the_first_rebalance(broker):
    """Kafka's group.initial.rebalance.delay.ms (3 s by default): the first rebalance of a
    new group waits for more members, so two consumers started together both get a share of
    the first assignment, and nothing the first had read is handed to the second afterwards."""
    create_topic(broker.bootstrap, "together", partitions=4)
    produce_all(broker.bootstrap, "together", [(f"key-{i}".encode(), f"t-{i}".encode()) for i in range(2000)])
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "g-together", "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000, "heartbeat.interval.ms": 500, "auto.commit.interval.ms": 60000}
    seen = {"a": [], "b": []}
    assignments = {"a": [], "b": []}
    stop = threading.Event()

    def run(name):
        c = Consumer(conf)
        c.subscribe(["together"], on_assign=lambda _c, parts: assignments[name].append(sorted(p.partition for p in parts)))
        while not stop.is_set():
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                seen[name].append(msg.value())
        c.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    started = time.time()
    for t in threads:
        t.start()
    wait_until(lambda: len(seen["a"]) + len(seen["b"]) >= 2000, what="all 2000 consumed")
    time.sleep(1.5)  # a late rebalance would redeliver within this
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(assignments["a"]) == 1 and len(assignments["b"]) == 1, f"one assignment each, no second rebalance: {assignments}"
    assert sorted(assignments["a"][0] + assignments["b"][0]) == [0, 1, 2, 3] and assignments["a"][0] and assignments["b"][0]
    assert len(seen["a"]) + len(seen["b"]) == 2000, "nothing read twice (auto-commit had not run: a rebalance would redeliver)"
    assert time.time() - started >= 3, "the first rebalance waited the 3 s delay"


def test_committed_offsets_resume_after_broker_restart(broker):
    create_topic(broker.bootstrap, "resume", partitions=2)
    produce_all(broker.bootstrap, "resume", [(None, f"r-{i}".encode()) for i in range(100)], acks="all")
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "g-resume", "auto.offset.reset": "earliest", "enable.auto.commit": False}
    c = Consumer(conf)
    c.subscribe(["resume"])
    first = consume(c, 100)
    assert len(first) == 100
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition("resume", 0), TopicPartition("resume", 1)], timeout=10)
    # librdkafka's sticky partitioner may put all 100 keyless records in one partition; the
    # other then has no committed offset (OFFSET_INVALID, -1001), as on Kafka. Each partition
    # that held records has its count committed.
    held = {}
    for m in first:
        held[m.partition()] = held.get(m.partition(), 0) + 1
    assert {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == held
    assert all(tp.offset == -1001 for tp in committed if tp.partition not in held)
    c.close()

    broker.restart()
    produce_all(broker.bootstrap, "resume", [(None, f"after-{i}".encode()) for i in range(10)], acks="all")
    c = Consumer(conf)
    c.subscribe(["resume"])
    second = consume(c, 10)
    c.close()
    assert sorted(m.value() for m in second) == sorted(f"after-{i}".encode() for i in range(10)), "resumed at the committed offsets"


def test_commit_metadata_round_trips(broker):
    create_topic(broker.bootstrap, "meta")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-meta"})
    tp = TopicPartition("meta", 0, 0, metadata="checkpoint-42")
    c.commit(offsets=[tp], asynchronous=False)
    got = c.committed([TopicPartition("meta", 0)], timeout=10)[0]
    c.close()
    assert got.offset == 0 and got.metadata == "checkpoint-42"


def test_seek_by_timestamp(broker):
    create_topic(broker.bootstrap, "times")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    base = 1_700_000_000_000
    for i in range(50):
        producer.produce("times", value=f"t-{i}".encode(), timestamp=base + i * 1000)
    producer.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-times"})
    found = c.offsets_for_times([TopicPartition("times", 0, base + 20_500)], timeout=10)[0]
    assert found.offset == 21
    after_all = c.offsets_for_times([TopicPartition("times", 0, base + 999_999)], timeout=10)[0]
    assert after_all.offset == -1
    c.assign([found])
    msg = consume(c, 1)[0]
    c.close()
    assert msg.value() == b"t-21" and msg.timestamp()[1] == base + 21_000


def test_admin_describe_configs_and_delete(broker):
    create_topic(broker.bootstrap, "cfg", partitions=2, config={"retention.ms": "3600000", "cleanup.policy": "compact"})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].is_default
    with pytest.raises(KafkaException):
        admin.create_topics([NewTopic("cfg", num_partitions=1, replication_factor=1)])["cfg"].result(timeout=10)
    with pytest.raises(KafkaException):
        admin.create_topics([NewTopic("bad", num_partitions=1, replication_factor=3)])["bad"].result(timeout=10)
    admin.delete_topics(["cfg"])["cfg"].result(timeout=10)
    assert "cfg" not in admin.list_topics(timeout=10).topics


def test_sigkill_under_acks_all_loses_nothing_acknowledged(broker):
    create_topic(broker.bootstrap, "durable", partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                         "message.timeout.ms": 5000, "retries": 0})
    acked = set()

    def on_delivery(err, msg):
        if err is None:
            acked.add(msg.value())

    i = 0
    kill_at = time.time() + 2.0
    while time.time() < kill_at:
        producer.produce("durable", value=f"d-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
        i += 1
        if i % 1000 == 0:
            time.sleep(0.01)
    broker.kill9()
    producer.flush(10)  # deliveries after the kill fail; those are not acknowledged
    assert len(acked) > 100, f"only {len(acked)} acknowledged before the kill"

    broker.start()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-durable", "auto.offset.reset": "earliest"})
    c.subscribe(["durable"])
    stored = set()
    deadline = time.time() + 30
    while time.time() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            if acked <= stored:
                break
            continue
        if not msg.error():
            stored.add(msg.value())
    c.close()
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"


def test_group_membership_survives_a_broker_restart_without_rebalance(broker):
    create_topic(broker.bootstrap, "steady", partitions=2)
    assigns = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-steady", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    c.subscribe(["steady"], on_assign=lambda consumer, parts: assigns.append(sorted(p.partition for p in parts)))
    produce_all(broker.bootstrap, "steady", [(None, f"before-{i}".encode()) for i in range(20)])
    assert len(consume(c, 20)) == 20
    assert assigns == [[0, 1]]
    time.sleep(1)
    broker.restart()
    produce_all(broker.bootstrap, "steady", [(None, f"after-{i}".encode()) for i in range(20)])
    got = consume(c, 20)
    time.sleep(2)  # several heartbeats in the old generation
    c.poll(0.5)
    c.close()
    assert sorted(m.value() for m in got) == sorted(f"after-{i}".encode() for i in range(20))
    assert assigns == [[0, 1]], "no rebalance: the member kept its generation across the restart"


def test_static_member_rejoins_without_a_new_member_id_taking_over(broker):
    create_topic(broker.bootstrap, "static", partitions=2)
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "g-static", "group.instance.id": "worker-1",
            "auto.offset.reset": "earliest", "session.timeout.ms": 10000}
    produce_all(broker.bootstrap, "static", [(None, f"s-{i}".encode()) for i in range(10)])
    c = Consumer(conf)
    c.subscribe(["static"])
    assert len(consume(c, 10)) == 10
    c.commit(asynchronous=False)
    c.close()  # static members do not leave the group on close
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = admin.describe_consumer_groups(["g-static"])["g-static"].result(timeout=10)
    assert [m.group_instance_id for m in desc.members] == ["worker-1"]
    c = Consumer(conf)
    c.subscribe(["static"])
    produce_all(broker.bootstrap, "static", [(None, b"s-late")])
    got = consume(c, 1)
    c.close()
    assert [m.value() for m in got] == [b"s-late"]
    desc = admin.describe_consumer_groups(["g-static"])["g-static"].result(timeout=10)
    assert [m.group_instance_id for m in desc.members] == ["worker-1"], "the restarted instance replaced itself"


def test_a_killed_member_is_expired_and_its_partitions_move(broker):
    import subprocess
    import sys
    create_topic(broker.bootstrap, "expire", partitions=2)
    script = f"""
import time
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "{broker.bootstrap}", "group.id": "g-expire", "session.timeout.ms": 3000,
               "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest"}})
c.subscribe(["expire"])
while True:
    c.poll(0.2)
"""
    victim = subprocess.Popen([sys.executable, "-c", script])
    assigned = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-expire", "session.timeout.ms": 3000,
                  "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest"})
    try:
        time.sleep(3)
        c.subscribe(["expire"], on_assign=lambda consumer, parts: assigned.append(sorted(p.partition for p in parts)))
        wait_until(lambda: (c.poll(0.2), assigned and len(assigned[-1]) == 1)[1], what="sharing the partitions with the victim")
        victim.kill()  # no LeaveGroup: the broker must notice the silence
        wait_until(lambda: (c.poll(0.2), assigned[-1] == [0, 1])[1], timeout=30, what="taking over after session expiry")
    finally:
        victim.kill()
        victim.wait()
        c.close()


def test_cooperative_sticky_assignor(broker):
    create_topic(broker.bootstrap, "coop", partitions=4)
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "g-coop", "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky", "heartbeat.interval.ms": 300}
    owned = {"a": set(), "b": set()}

    def tracker(name):
        def on_assign(consumer, parts):
            owned[name] |= {p.partition for p in parts}

        def on_revoke(consumer, parts):
            owned[name] -= {p.partition for p in parts}
        return on_assign, on_revoke

    a, b = Consumer(conf), Consumer(conf)
    a.subscribe(["coop"], on_assign=tracker("a")[0], on_revoke=tracker("a")[1])
    wait_until(lambda: (a.poll(0.1), owned["a"] == {0, 1, 2, 3})[1], what="a owning everything")
    b.subscribe(["coop"], on_assign=tracker("b")[0], on_revoke=tracker("b")[1])
    wait_until(lambda: (a.poll(0.1), b.poll(0.1), len(owned["a"]) == 2 and len(owned["b"]) == 2)[2],
               what="an incremental rebalance giving b half")
    assert not owned["a"] & owned["b"]
    produce_all(broker.bootstrap, "coop", [(f"k{i}".encode(), f"c-{i}".encode()) for i in range(400)])
    seen = []
    deadline = time.time() + 30
    while len(seen) < 400 and time.time() < deadline:
        for c in (a, b):
            m = c.poll(0.1)
            if m is not None and not m.error():
                seen.append(m.value())
    a.close()
    b.close()
    assert sorted(seen) == sorted(f"c-{i}".encode() for i in range(400))
