"""Routing must agree with Kafka's default partitioner (Java clients and librdkafka murmur2)."""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import random
import string

import pytest

from cdc_bridge.aggregate.router import murmur2, partition_for, to_positive

# Kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2),
# the extra lengths 24..27 and librdkafka's rdmurmur2.c unit test vectors.
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
    "string-f-24-chars-length": 124730809,
    "string-fo-25-chars-length": 1269511650,
    "string-foo-26-chars-length": 119165628,
    "string-last-27-chars-length": 1089971754,
}
LIBRDKAFKA_VECTORS = {  # unsigned in rdmurmur2.c
    "kafka": 0xD067CF64,
    "giberish123456789": 0x8F552B0C,
    "1234": 0x9FC97B14,
    "234": 0xE7C009CA,
    "34": 0x873930DA,
    "4": 0x5A4B5CA1,
    "PreAmbleWillBeRemoved,ThePrePartThatIs": 0x78424F1C,
    "reAmbleWillBeRemoved,ThePrePartThatIs": 0x4A62B377,
    "eAmbleWillBeRemoved,ThePrePartThatIs": 0xE0E4E09E,
    "AmbleWillBeRemoved,ThePrePartThatIs": 0x62B8B43F,
    "": 0x106E08D9,
}


@pytest.mark.parametrize("key,expected", sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka_java_utils(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


@pytest.mark.parametrize("key,expected", sorted(LIBRDKAFKA_VECTORS.items()))
def test_murmur2_matches_librdkafka_vectors(key: str, expected: int) -> None:
    assert murmur2(key.encode()) & 0xFFFFFFFF == expected


def test_murmur2_is_signed_32_bit() -> None:
    values = [murmur2(f"k{i}".encode()) for i in range(2000)]
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)


def test_partition_is_to_positive_hash_mod_p() -> None:
    # Given Kafka's vector for "21", when routed among 7 partitions
    # then it is toPositive(murmur2) % 7, as in BuiltInPartitioner.partitionForKey.
    assert partition_for("21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert to_positive(-(2**31)) == 0
    assert all(0 <= partition_for(f"id-{i}", 12) < 12 for i in range(500))
    assert partition_for("anything", 1) == 0


def test_partition_key_is_utf8() -> None:
    assert partition_for("Zürich", 1000) == to_positive(murmur2("Zürich".encode("utf-8"))) % 1000


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError):
        partition_for("x", 0)


def _random_keys(n: int, seed: int = 5) -> list[str]:
    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + ":-_/ äöüé€"
    keys = [str(rnd.randrange(10**12)) for _ in range(n // 2)]
    keys += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40))) for _ in range(n - len(keys))]
    return keys


def _librdkafka() -> ctypes.CDLL:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    libs = glob.glob(os.path.join(os.path.dirname(confluent_kafka.__file__) + ".libs", "librdkafka*.so*"))
    try:
        lib = ctypes.CDLL(libs[0]) if libs else ctypes.CDLL("librdkafka.so.1")
    except OSError:
        pytest.skip("librdkafka shared library not found")
    return lib


def test_agrees_with_librdkafka_murmur2_partitioner_on_1000_random_keys() -> None:
    # librdkafka's public partitioner function: (rd_murmur2(key) & 0x7fffffff) % partition_cnt.
    # With partition_cnt = 2^31 - 1 it returns the whole positive hash, not just its low bits.
    lib = _librdkafka()
    fn = lib.rd_kafka_msg_partitioner_murmur2
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
    for key in _random_keys(1000):
        data = key.encode()
        assert to_positive(murmur2(data)) % (2**31 - 1) == fn(None, data, len(data), 2**31 - 1, None, None), key
        for p in (3, 16, 100):
            assert partition_for(key, p) == fn(None, data, len(data), p, None, None), (key, p)


def test_agrees_with_a_librdkafka_producer_on_a_mock_cluster() -> None:
    # End to end: produce with partitioner=murmur2 and read the partition from the delivery
    # report. The mock cluster auto-creates topics with 4 partitions.
    confluent_kafka = pytest.importorskip("confluent_kafka")
    quiet = logging.getLogger("test_router.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    producer = confluent_kafka.Producer(
        {"test.mock.num.brokers": 1, "partitioner": "murmur2", "logger": quiet, "linger.ms": 5}
    )
    got: dict[bytes, int] = {}
    errors: list[object] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            got[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    keys = list(dict.fromkeys(k for k in _random_keys(1000, seed=11) if k))
    for key in keys:
        producer.produce("router-test", key=key.encode(), value=b"x", on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors
    partitions = len(producer.list_topics("router-test", timeout=10).topics["router-test"].partitions)
    assert partitions > 1
    assert len(got) == len(keys)
    mismatches = [k for k in keys if got[k.encode()] != partition_for(k, partitions)]
    assert mismatches == []


def test_the_compiled_partitioner_agrees_with_the_python_one():
    """The hot paths use the compiled murmur2 when native/ is built; router.py's stays the reference."""
    from cdc_bridge.aggregate import router

    native = pytest.importorskip("cdc_bridge._native").partition_of
    assert router._partition_of is native
    rng = random.Random(7)
    alphabet = string.printable + "äöüßЖ中文🙂"
    keys = list(KAFKA_VECTORS) + list(LIBRDKAFKA_VECTORS) + [""]
    keys += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    for key in keys:
        for partitions in (1, 2, 3, 16, 100, 2**31 - 1):
            assert native(key, partitions) == to_positive(murmur2(key.encode())) % partitions, (key, partitions)
