"""Debian's kcat (librdkafka 2.0.2, the oldest client we serve) against the real broker."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by scripts/test.sh")


def kcat(*args, input=None, timeout=60):
    out = subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_metadata_lists_the_broker(broker):
    out = kcat("-b", broker.bootstrap, "-L")
    assert f"broker 1 at {broker.bootstrap} (controller)" in out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_each_codec(broker, codec):
    lines = "".join(f"{codec}-{i}\n" for i in range(5000))
    kcat("-b", broker.bootstrap, "-P", "-t", f"c-{codec}", "-z", codec, input=lines.encode())
    out = kcat("-b", broker.bootstrap, "-C", "-t", f"c-{codec}", "-o", "beginning", "-e", "-q")
    assert out == lines


def test_keys_and_offsets(broker):
    kcat("-b", broker.bootstrap, "-P", "-t", "keyed", "-K", ":", input=b"a:1\nb:2\na:3\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", "keyed", "-o", "beginning", "-e", "-q", "-f", "%k=%s@%o\n")
    assert out == "a=1@0\nb=2@1\na=3@2\n"


def test_balanced_consumer_group(broker):
    lines = "".join(f"g-{i}\n" for i in range(1000))
    kcat("-b", broker.bootstrap, "-P", "-t", "grouped", input=lines.encode())
    out = kcat("-b", broker.bootstrap, "-G", "kcat-group", "grouped", "-X", "auto.offset.reset=earliest", "-e", "-q")
    assert sorted(out.splitlines()) == sorted(lines.splitlines())
    # The group committed its position: a second run of the same group has nothing left.
    again = kcat("-b", broker.bootstrap, "-G", "kcat-group", "grouped", "-e", "-q")
    assert again == ""


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_sluice_consume_reads_what_kcat_compressed(broker, codec):
    """`sluice consume` decompresses batches that Kafka producers compressed."""
    import subprocess as sp
    from conftest import sluice_binary
    lines = "".join(f"{codec}-{i}\n" for i in range(300))
    kcat("-b", broker.bootstrap, "-P", "-t", f"z-{codec}", "-z", codec, input=lines.encode())
    out = sp.run([sluice_binary(), "--data-dir", broker.data_dir, "consume", f"z-{codec}", "--from-beginning", "--exit-at-end"],
                 capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode() == lines
