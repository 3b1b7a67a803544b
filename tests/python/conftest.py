"""Fixtures for the real-client tests: a real `sluice broker` process on a free loopback port,
with its own temporary data directory, killed and removed after each test."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sluice_binary() -> str:
    path = os.environ.get("SLUICE_BIN") or str(ROOT / "target" / "debug" / "sluice")
    if not Path(path).exists():
        pytest.fail(f"{path} not found: build it first (cargo build -p sluice) or set SLUICE_BIN")
    return path


class BrokerProcess:
    def __init__(self, data_dir: str, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = 0

    def start(self):
        # Reuse the port across restarts so clients reconnect to the same address.
        listen = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sluice_binary(), "--data-dir", self.data_dir, "broker", "--listen", listen, *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.data_dir, "..", "broker.log"), "ab"),
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            text=True,
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"broker did not start: {line!r}; see {self.data_dir}/../broker.log")
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout=15):
        """Graceful stop (SIGTERM): in-flight requests drain, the log closes cleanly."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self):
        self.stop()
        return self.start()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaNode:
    """One Apache Kafka node (KRaft, broker and controller in one JVM) from the jars of
    scripts/kafka-jars.sh (SLUICE_KAFKA_LIB), on free loopback ports, in `work`: the reference
    the tests hold Sluice's broker to. Kafka's own defaults are kept, but for what one node
    needs (replication factor 1 for its internal topics)."""

    def __init__(self, lib: str, work: str):
        self.lib, self.work = lib, Path(work)
        self.port, controller = free_port(), free_port()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "log4j2.properties").write_text(
            "status=warn\nappender.c.type=Console\nappender.c.name=OUT\nappender.c.layout.type=PatternLayout\n"
            "appender.c.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=INFO\nrootLogger.appenderRef.c.ref=OUT\n")
        (self.work / "server.properties").write_text(
            f"process.roles=broker,controller\nnode.id=1\ncontroller.quorum.bootstrap.servers=127.0.0.1:{controller}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"log.dirs={self.work / 'data'}\nnum.partitions=1\noffsets.topic.replication.factor=1\n"
            "transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n"
            "share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n")
        self.proc = None

    def _java(self, *args, **kw):
        return subprocess.run(["java", f"-Dlog4j2.configurationFile=file:{self.work / 'log4j2.properties'}",
                               "-cp", f"{self.lib}/*", *args], capture_output=True, text=True, timeout=120, **kw)

    def start(self):
        cluster_id = self._java("kafka.tools.StorageTool", "random-uuid").stdout.strip()
        formatted = self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                               "-c", str(self.work / "server.properties"))
        assert formatted.returncode == 0, f"formatting Kafka's storage failed: {formatted.stdout}{formatted.stderr}"
        log = open(self.work / "kafka.log", "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xms512m", "-Xmx512m", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile=file:{self.work / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={self.work / 'logs'}", "-cp", f"{self.lib}/*", "kafka.Kafka",
             str(self.work / "server.properties")],
            stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: "Kafka Server started" in (self.work / "kafka.log").read_text(errors="replace")
                   or self.proc.poll() is not None, timeout=120, what="Apache Kafka to start")
        assert self.proc.poll() is None, "Kafka exited: " + (self.work / "kafka.log").read_text(errors="replace")[-3000:]
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class KafkaCluster:
    """Three combined broker/controller Apache Kafka nodes (KRaft, a static quorum) on free
    loopback ports, replication factor 3 and `min.insync.replicas=2` by default: the cluster
    the failure tests kill a broker of."""

    def __init__(self, lib: str, work: str, nodes: int = 3):
        self.lib, self.work = lib, Path(work)
        self.ports = [free_port() for _ in range(nodes)]
        self.controllers = [free_port() for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(self.controllers))
        self.work.mkdir(parents=True, exist_ok=True)
        self.log4j = self.work / "log4j2.properties"
        self.log4j.write_text(
            "status=warn\nappender.c.type=Console\nappender.c.name=OUT\nappender.c.layout.type=PatternLayout\n"
            "appender.c.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=INFO\nrootLogger.appenderRef.c.ref=OUT\n")
        self.props = []
        for i, (port, controller) in enumerate(zip(self.ports, self.controllers)):
            props = self.work / f"node{i + 1}.properties"
            props.write_text(
                f"process.roles=broker,controller\nnode.id={i + 1}\ncontroller.quorum.voters={voters}\n"
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n"
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n"
                "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
                f"log.dirs={self.work / f'data{i + 1}'}\nnum.partitions=1\ndefault.replication.factor={nodes}\n"
                f"offsets.topic.replication.factor={nodes}\ntransaction.state.log.replication.factor={nodes}\n"
                f"min.insync.replicas={min(2, nodes)}\ntransaction.state.log.min.isr={min(2, nodes)}\n"
                "group.initial.rebalance.delay.ms=0\nnum.network.threads=2\nnum.io.threads=2\n")
            self.props.append(props)
        self.procs = [None] * nodes

    def _java(self, *args):
        return subprocess.run(["java", f"-Dlog4j2.configurationFile=file:{self.log4j}", "-cp", f"{self.lib}/*", *args],
                              capture_output=True, text=True, timeout=120)

    def start(self):
        cluster_id = self._java("kafka.tools.StorageTool", "random-uuid").stdout.strip()
        for props in self.props:
            formatted = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props))
            assert formatted.returncode == 0, f"formatting Kafka's storage failed: {formatted.stdout}{formatted.stderr}"
        for i in range(len(self.props)):
            self.start_node(i)
        for i in range(len(self.props)):
            self.wait_started(i)
        return self

    def node_log(self, i) -> Path:
        return self.work / f"node{i + 1}.log"

    def start_node(self, i):
        log = open(self.node_log(i), "ab")
        self.procs[i] = subprocess.Popen(
            ["java", "-Xms384m", "-Xmx384m", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile=file:{self.log4j}",
             f"-Dkafka.logs.dir={self.work / f'logs{i + 1}'}", "-cp", f"{self.lib}/*", "kafka.Kafka", str(self.props[i])],
            stdout=log, stderr=subprocess.STDOUT)

    def wait_started(self, i):
        wait_until(lambda: "Kafka Server started" in self.node_log(i).read_text(errors="replace")
                   or self.procs[i].poll() is not None, timeout=120, what=f"Kafka node {i + 1} to start")
        assert self.procs[i].poll() is None, self.node_log(i).read_text(errors="replace")[-3000:]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def kill9_node(self, i):
        if self.procs[i] and self.procs[i].poll() is None:
            self.procs[i].kill()
            self.procs[i].wait(timeout=30)

    def kill9(self):
        for i in range(len(self.procs)):
            self.kill9_node(i)


@pytest.fixture
def broker():
    tmp = tempfile.mkdtemp(prefix="sluice-broker-test-")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    b = BrokerProcess(data).start()
    try:
        yield b
    finally:
        b.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_until(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


LISTENER_LINES = {
    "kafka": "kafka listener on ",
    "registry": "schema registry on ",
    "rest": "rest api on ",
}


def start_run(tmp_path, pipeline):
    """`sluice run` on the pipeline file, its stderr in tmp_path/run.stderr: the process and
    its listeners' addresses by name (`kafka`, `registry`, `rest`), read from stdout up to
    the REST API's line, which `sluice run` prints after the others."""
    proc = subprocess.Popen(
        [sluice_binary(), "run", str(pipeline), "--rest-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "run.stderr", "ab"),
        text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("SLUICE_TEST_LOG", "warn")},
    )
    addresses = {}
    for _ in range(30):
        line = proc.stdout.readline()
        for name, prefix in LISTENER_LINES.items():
            if line.startswith(prefix):
                addresses[name] = line[len(prefix):].split()[0]
        if "rest" in addresses:
            return proc, addresses
    proc.kill()
    raise AssertionError("no REST listener address on stdout: " + (tmp_path / "run.stderr").read_text())


def stop_run(proc, timeout=20):
    """SIGTERM, then the exit code (the process is killed if it does not end in time)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def kafka_lib() -> str:
    """The Apache Kafka classpath the README's test command fetched (scripts/kafka-jars.sh)."""
    lib = os.environ.get("SLUICE_KAFKA_LIB")
    if not lib or not Path(lib, ".complete").exists():
        pytest.fail("SLUICE_KAFKA_LIB is not set to a complete Kafka classpath: run "
                    "`export SLUICE_KAFKA_LIB=$(scripts/kafka-jars.sh)` (the README's test command does)")
    return lib


def running(kind):
    """A module-scoped Kafka of `kind` (KafkaNode or KafkaCluster), killed and removed after."""
    tmp = tempfile.mkdtemp(prefix="sluice-kafka-")
    kafka = kind(kafka_lib(), os.path.join(tmp, "kafka")).start()
    try:
        yield kafka
    finally:
        kafka.kill9()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def kafka():
    """One Apache Kafka node for the test file."""
    yield from running(KafkaNode)


@pytest.fixture(scope="module")
def kafka_cluster():
    """Three Apache Kafka nodes for the test file."""
    yield from running(KafkaCluster)
