"""LmdbStateStore on a real LMDB environment in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_bridge.source.position import SourcePosition
from cdc_bridge.state import (
    AggregateRecord,
    HeldRef,
    LmdbStateStore,
    PartitionCountMismatchError,
    StateStoreError,
    StateStoreLockedError,
    StateStoreReadOnlyError,
)

POS1 = SourcePosition("0-1-10", "mysql-bin.000001", 1000)
POS2 = SourcePosition("0-1-11", "mysql-bin.000002", 400)


def rec(aid: str, seq: int = 1, **state: object) -> AggregateRecord:
    return AggregateRecord("Order", aid, {"exists": True, **state}, sequence=seq, last_position=POS1, held_since=None)


def test_fresh_store(store: LmdbStateStore) -> None:
    assert store.get(0, "Order", "1") is None
    assert store.applied_position() is None
    assert store.meta() == {"format": 1, "partitions": 4, "batch": 0}
    assert store.held_stats() == (0, None)


def test_put_is_visible_before_commit_and_durable_after(store: LmdbStateStore, path: Path) -> None:
    store.put(1, rec("42", total="1.00"))
    assert store.get(1, "Order", "42") == rec("42", total="1.00")
    assert store.get(2, "Order", "42") is None          # partitions are separate key spaces
    assert store.stats()["entries"] == 0 and store.stats()["dirty"] == 1
    assert store.commit(POS1) == 1
    assert store.stats()["entries"] == 1 and store.stats()["dirty"] == 0
    store.close()
    with LmdbStateStore(path, partitions=4) as again:
        assert again.get(1, "Order", "42") == rec("42", total="1.00")
        assert again.applied_position() == POS1
        assert again.meta()["batch"] == 1


def test_rollback_drops_the_uncommitted_batch(store: LmdbStateStore) -> None:
    store.put(0, rec("1", seq=1))
    store.commit(POS1)
    store.put(0, rec("1", seq=2))
    store.put(0, rec("2"))
    store.delete(0, "Order", "1")
    assert store.get(0, "Order", "1") is None
    store.rollback()
    assert store.get(0, "Order", "1") == rec("1", seq=1)
    assert store.get(0, "Order", "2") is None
    assert store.applied_position() == POS1


def test_delete_is_committed(store: LmdbStateStore) -> None:
    store.put(3, rec("1"))
    store.commit(POS1)
    store.delete(3, "Order", "1")
    store.commit(POS2)
    assert store.get(3, "Order", "1") is None
    assert list(store.records(3)) == []


def test_commit_writes_position_batch_and_extra_meta(store: LmdbStateStore) -> None:
    store.commit(POS1, {"origin": POS1.to_dict()})
    store.commit(POS2)
    m = store.meta()
    assert m["batch"] == 2 and m["applied_position"] == POS2.to_dict() and m["origin"] == POS1.to_dict()
    # the pipeline passes its own (Kafka) batch number
    assert store.commit(POS2, {"batch": 17}) == 17
    assert store.meta()["batch"] == 17
    for bad in ({"partitions": 3}, {"applied_position": 1}, {"held_count:p0000": 1}, {"batch": "x"}):
        with pytest.raises(ValueError):
            store.commit(POS2, bad)


class _FailingEnv:
    """Wraps the LMDB env so that the write transaction fails after `n` puts (put or putmulti)."""

    def __init__(self, env, n: int):
        self.env, self.n = env, n

    def __getattr__(self, name):
        return getattr(self.env, name)

    def begin(self, *a, **kw):
        txn = self.env.begin(*a, **kw)
        if not kw.get("write"):
            return txn
        outer = self

        class Txn:
            def __enter__(self):
                txn.__enter__()
                return self

            def __exit__(self, *exc):
                return txn.__exit__(*exc)

            def put(self, *a, **kw):
                if outer.n == 0:
                    raise OSError("disk on fire")
                outer.n -= 1
                return txn.put(*a, **kw)

            def cursor(self, *a, **kw):
                cur = txn.cursor(*a, **kw)

                class Cursor:
                    def putmulti(self, items, *pa, **pk):   # the first n puts land, then the failure
                        items = list(items)
                        if len(items) > outer.n:
                            cur.putmulti(items[:outer.n])
                            outer.n = 0
                            raise OSError("disk on fire")
                        outer.n -= len(items)
                        return cur.putmulti(items, *pa, **pk)

                    def __getattr__(self, name):
                        return getattr(cur, name)

                return Cursor()

            def __getattr__(self, name):
                return getattr(txn, name)

        return Txn()


def test_batch_is_one_transaction_across_partitions(store: LmdbStateStore) -> None:
    # A failure in the middle of commit leaves nothing of the batch behind.
    store.put(0, rec("kept"))
    store.commit(POS1)
    for p in range(4):
        store.put(p, rec(f"x{p}"))
    real = store._env
    store._env = _FailingEnv(real, n=2)
    with pytest.raises(OSError):
        store.commit(POS2)
    store._env = real
    store.rollback()
    assert all(store.get(p, "Order", f"x{p}") is None for p in range(4))
    assert store.get(0, "Order", "kept") is not None
    assert store.applied_position() == POS1 and store.meta()["batch"] == 1


def _read_in_other_process(path: Path, code: str) -> str:
    import subprocess
    import sys

    prog = (
        "from cdc_bridge.state import LmdbStateStore\n"
        f"s = LmdbStateStore({str(path)!r}, partitions=4, readonly=True)\n" + code
    )
    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60, cwd=repo)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_reader_sees_a_batch_only_once_committed(store: LmdbStateStore, path: Path) -> None:
    store.commit(POS1)
    store.put(2, rec("r"))
    probe = "print(s.get(2, 'Order', 'r') is not None, s.applied_position().binlog_pos)"
    assert _read_in_other_process(path, probe) == "False 1000"
    store.commit(POS2)
    assert _read_in_other_process(path, probe) == "True 400"


def test_opening_with_another_partition_count_is_refused(store: LmdbStateStore, path: Path) -> None:
    store.commit(POS1)
    store.close()
    with pytest.raises(PartitionCountMismatchError, match="holds 4 partitions but was opened with 8.*rebuild"):
        LmdbStateStore(path, partitions=8)
    with pytest.raises(PartitionCountMismatchError):
        LmdbStateStore(path, partitions=2)
    with LmdbStateStore(path, partitions=4) as ok:  # the failed opens left nothing locked
        assert ok.applied_position() == POS1


def test_one_writer_per_directory(store: LmdbStateStore, path: Path) -> None:
    with pytest.raises(StateStoreLockedError, match="another process"):
        LmdbStateStore(path, partitions=4)
    # read-only opens (inspect) take no lock and cannot write
    prog = (
        "try:\n    s.put(0, None)\nexcept Exception as e:\n    print(type(e).__name__)\n"
        "print(s.meta()['partitions'])"
    )
    assert _read_in_other_process(path, prog).split() == ["StateStoreReadOnlyError", "4"]


def test_readonly_store_refuses_writes(store: LmdbStateStore, path: Path) -> None:
    store.commit(POS1)
    store.close()
    with LmdbStateStore(path, partitions=4, readonly=True) as ro:
        assert ro.applied_position() == POS1
        with pytest.raises(StateStoreReadOnlyError):
            ro.put(0, rec("1"))
        with pytest.raises(StateStoreReadOnlyError):
            ro.commit(POS2)


def test_readonly_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StateStoreError, match="no state store"):
        LmdbStateStore(tmp_path / "nothing", partitions=4, readonly=True)


def test_map_grows_when_full(path: Path) -> None:
    with LmdbStateStore(path, partitions=2, map_size=64 * 1024) as s:
        start = s.map_size
        big = "x" * 2000
        for i in range(400):
            s.put(i % 2, rec(str(i), blob=big))
        s.commit(POS1)
        assert s.map_size >= start * 4
        assert s.stats()["entries"] == 400
        assert 0 < s.stats()["map_used_ratio"] <= 1
    with LmdbStateStore(path, partitions=2, map_size=64 * 1024) as s:
        assert s.get(1, "Order", "399") == rec("399", blob="x" * 2000)
        assert s.map_size >= start * 4   # an existing, larger map is kept


def test_stats_shape(store: LmdbStateStore) -> None:
    st = store.stats()
    assert set(st) == {"size_bytes", "map_size", "map_used_ratio", "entries", "held", "dirty"}
    assert st["map_size"] == 1 << 20 and st["size_bytes"] > 0


def test_long_ids_are_stored_under_a_bounded_key(store: LmdbStateStore) -> None:
    long_a, long_b = "a" * 600 + "1", "a" * 600 + "2"
    store.put(0, rec(long_a))
    store.put(0, rec(long_b, seq=2))
    store.commit(POS1)
    assert store.get(0, "Order", long_a).aggregate_id == long_a
    assert store.get(0, "Order", long_b).sequence == 2


def test_partition_out_of_range(store: LmdbStateStore) -> None:
    with pytest.raises(ValueError, match="out of range"):
        store.get(4, "Order", "1")
    with pytest.raises(ValueError):
        store.put(-1, rec("1"))


def test_json_serialization_keeps_key_order_and_unicode(store: LmdbStateStore) -> None:
    state = {"zeta": 1, "alpha": "Zürich €", "children": {"lines": {"2": {"b": 1}, "1": {"a": 2}}}}
    store.put(0, AggregateRecord("Order", "ü", state, 3, POS2, 12.5))
    store.commit(POS2)
    got = store.get(0, "Order", "ü")
    assert got == AggregateRecord("Order", "ü", state, 3, POS2, 12.5)
    assert list(got.state) == ["zeta", "alpha", "children"]
    assert list(got.state["children"]["lines"]) == ["2", "1"]


# ---------------------------------------------------------------------------- held index


def ref(p: int, since: float, aid: str, cid: str = "1") -> HeldRef:
    return HeldRef(p, since, "Order", aid, "lines", cid)


def test_held_index_orders_by_age_and_merges_batch_with_committed(store: LmdbStateStore) -> None:
    store.held_add(ref(1, 300.0, "c"))
    store.held_add(ref(1, 100.0, "a"))
    store.held_add(ref(2, 50.0, "z"))
    store.commit(POS1)
    store.held_add(ref(1, 200.0, "b"))
    store.held_add(ref(1, 100.0, "a"))        # already there: no double count
    store.held_remove(ref(1, 300.0, "c"))
    assert [r.aggregate_id for r in store.held_oldest(1)] == ["a", "b"]
    assert store.held_count(1) == 2 and store.held_count(2) == 1
    assert store.held_stats() == (3, 50.0)
    assert store.held_oldest(1, limit=1) == [ref(1, 100.0, "a")]
    assert store.held_oldest(1, before=150.0) == [ref(1, 100.0, "a")]
    store.rollback()
    assert [r.aggregate_id for r in store.held_oldest(1)] == ["a", "c"]
    store.held_remove(ref(2, 50.0, "z"))
    store.held_remove(ref(2, 50.0, "z"))      # not there any more: no double count
    store.commit(POS2)
    assert store.held_stats() == (2, 100.0)
    assert store.held_count(2) == 0


def test_held_due_spans_partitions_oldest_first(store: LmdbStateStore) -> None:
    store.held_add(ref(3, 20.0, "d"))
    store.held_add(ref(0, 10.0, "a"))
    store.held_add(ref(2, 30.0, "c"))
    store.held_add(ref(0, 40.0, "b"))
    assert store.held_due(5.0) == []
    assert [r.aggregate_id for r in store.held_due(35.0)] == ["a", "d", "c"]
    for r in store.held_due(35.0):
        store.held_remove(r)
    assert store.held_due(35.0) == []
    assert [r.aggregate_id for r in store.held_due(100.0)] == ["b"]


def test_held_due_sees_entries_restored_by_rollback(store: LmdbStateStore) -> None:
    store.held_add(ref(0, 10.0, "a"))
    store.commit(POS1)
    for r in store.held_due(20.0):
        store.held_remove(r)
    assert store.held_due(20.0) == []
    store.rollback()
    assert store.held_due(20.0) == [ref(0, 10.0, "a")]


def test_held_index_persists(store: LmdbStateStore, path: Path) -> None:
    store.held_add(ref(1, 1.5, "a", "7"))
    store.commit(POS1)
    store.close()
    with LmdbStateStore(path, partitions=4) as s:
        assert s.held_oldest(1) == [ref(1, 1.5, "a", "7")]
        assert s.held_stats() == (1, 1.5)
