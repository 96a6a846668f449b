"""LmdbStateStore.seal / write / release_written / discard_sealed: the pipeline writes batch N on the
committer thread while batch N+1 is applied on top of it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cdc_bridge.source.position import SourcePosition
from cdc_bridge.state import AggregateRecord, HeldRef, LmdbStateStore, StateStoreError

POS1 = SourcePosition("0-1-10", "mysql-bin.000001", 1000)
POS2 = SourcePosition("0-1-11", "mysql-bin.000001", 2000)
POS3 = SourcePosition("0-1-12", "mysql-bin.000001", 3000)


def rec(aid: str, seq: int = 1, **state: object) -> AggregateRecord:
    return AggregateRecord("Order", aid, {"exists": True, **state}, sequence=seq, last_position=POS1, held_since=None)


def ref(p: int, since: float, aid: str, cid: str = "1") -> HeldRef:
    return HeldRef(p, since, "Order", aid, "lines", cid)


def committed(store: LmdbStateStore, partition: int, aid: str) -> AggregateRecord | None:
    """What LMDB itself holds (a fresh read transaction, no batch caches)."""
    from cdc_bridge.jsoncodec import loads

    with store._env.begin() as txn:
        raw = txn.get(store.record_key("Order", aid), db=store._pdb[partition])
    return AggregateRecord.from_json_dict(loads(raw)) if raw is not None else None


def write_on_thread(store: LmdbStateStore, layer) -> None:
    t = threading.Thread(target=store.write, args=(layer,))
    t.start()
    t.join()


def test_sealed_batch_is_read_under_the_open_one_and_written_on_another_thread(store: LmdbStateStore,
                                                                              path: Path) -> None:
    store.put(0, rec("1", total="1.00"))
    store.put(1, rec("2"))
    layer = store.seal(POS1, {"batch": 1})
    # the next batch sees the sealed one, and changes it on top
    assert store.get(0, "Order", "1") == rec("1", total="1.00")
    store.put(0, rec("1", seq=2, total="2.00"))
    store.delete(1, "Order", "2")
    assert store.get(0, "Order", "1").sequence == 2 and store.get(1, "Order", "2") is None
    assert store.applied_position() is None           # nothing written yet
    write_on_thread(store, layer)
    assert layer.state == "written" and layer.batch == 1
    store.release_written()
    # LMDB has batch 1 exactly; the open batch still wins in reads
    assert committed(store, 0, "1") == rec("1", total="1.00")
    assert committed(store, 1, "2") == rec("2")
    assert store.applied_position() == POS1
    assert store.get(0, "Order", "1").sequence == 2 and store.get(1, "Order", "2") is None
    assert store.commit(POS2, {"batch": 2}) == 2
    assert store.get(0, "Order", "1").sequence == 2 and store.get(1, "Order", "2") is None
    assert store.applied_position() == POS2


def test_a_later_in_place_change_does_not_leak_into_the_sealed_write(store: LmdbStateStore, path: Path) -> None:
    r = rec("1", total="1.00")
    store.put(0, r)
    layer = store.seal(POS1)
    r.state["total"] = "9.99"   # the record object is changed in place by the next batch
    store.write(layer)
    store.release_written()
    assert committed(store, 0, "1").state["total"] == "1.00"


def test_discarding_an_aborted_sealed_batch_restores_the_state_before_it(store: LmdbStateStore) -> None:
    store.put(0, rec("1", total="1.00"))
    store.commit(POS1)
    store.put(0, rec("1", seq=2, total="2.00"))
    store.held_add(ref(0, 5.0, "7"))
    layer = store.seal(POS2)
    store.put(0, rec("1", seq=3, total="3.00"))     # the open batch, on top
    with pytest.raises(StateStoreError, match="roll back the open batch first"):
        store.discard_sealed(layer)
    store.rollback()
    store.discard_sealed(layer)
    assert store.get(0, "Order", "1") == rec("1", total="1.00")
    assert store.held_count(0) == 0 and store.held_due(100.0) == []
    assert store.applied_position() == POS1


def test_only_the_newest_unwritten_batch_can_be_discarded(store: LmdbStateStore) -> None:
    store.put(0, rec("1"))
    first = store.seal(POS1)
    store.put(0, rec("2"))
    second = store.seal(POS2)
    with pytest.raises(StateStoreError, match="newest"):
        store.discard_sealed(first)
    store.write(first)
    store.release_written()
    store.write(second)
    with pytest.raises(StateStoreError, match="newest"):
        store.discard_sealed(second)     # already written
    store.release_written()
    assert store.applied_position() == POS2


def test_commit_refuses_while_a_sealed_batch_is_unwritten(store: LmdbStateStore) -> None:
    store.put(0, rec("1"))
    layer = store.seal(POS1)
    with pytest.raises(StateStoreError, match="still being written"):
        store.commit(POS2)
    store.write(layer)
    assert store.commit(POS2) == 2      # release_written first, then its own batch


def test_held_index_merges_sealed_open_and_committed(store: LmdbStateStore) -> None:
    store.held_add(ref(1, 100.0, "a"))
    store.held_add(ref(1, 300.0, "c"))
    store.commit(POS1)
    store.held_add(ref(1, 200.0, "b"))
    store.held_remove(ref(1, 100.0, "a"))
    store.seal(POS2)
    store.held_add(ref(1, 50.0, "z"))
    store.held_add(ref(1, 200.0, "b"))      # already held in the sealed batch: not counted twice
    store.held_remove(ref(1, 300.0, "c"))
    assert [r.aggregate_id for r in store.held_oldest(1)] == ["z", "b"]
    assert store.held_count(1) == 2
    assert store.held_stats() == (2, 50.0)
    assert [r.aggregate_id for r in store.held_due(250.0)] == ["z", "b"]
    store.held_add(ref(1, 100.0, "a"))      # re-added after its removal in the sealed batch
    assert [r.aggregate_id for r in store.held_oldest(1)] == ["z", "a", "b"]


def test_held_index_after_the_sealed_batch_is_written(store: LmdbStateStore) -> None:
    store.held_add(ref(2, 10.0, "a"))
    layer = store.seal(POS1)
    store.held_add(ref(2, 20.0, "b"))
    store.write(layer)
    # written but not released: LMDB and the sealed layer both have "a"; it is counted once
    assert [r.aggregate_id for r in store.held_oldest(2)] == ["a", "b"]
    store.release_written()
    assert [r.aggregate_id for r in store.held_oldest(2)] == ["a", "b"]
    assert store.held_count(2) == 2
    store.commit(POS2)
    assert store.held_count(2) == 2 and store.held_stats() == (2, 10.0)


def test_a_full_map_found_by_the_writer_thread_is_grown_on_release(path: Path) -> None:
    with LmdbStateStore(path, partitions=2, map_size=64 * 1024) as s:
        start = s.map_size
        for i in range(400):
            s.put(i % 2, rec(str(i), blob="x" * 2000))
        layer = s.seal(POS1)
        write_on_thread(s, layer)
        assert layer.state == "deferred"        # nothing written, nothing grown on that thread
        assert s.map_size == start
        s.release_written()
        assert layer.state == "written" and s.map_size >= start * 4
        assert s.stats()["entries"] == 400 and s.applied_position() == POS1


def test_a_failed_synchronous_commit_leaves_the_batch_open(store: LmdbStateStore) -> None:
    store.put(0, rec("1"))
    real = store._write_txn

    def boom(layer) -> None:
        raise OSError("disk gone")

    store._write_txn = boom  # type: ignore[method-assign]
    with pytest.raises(OSError):
        store.commit(POS1)
    store._write_txn = real  # type: ignore[method-assign]
    assert store.get(0, "Order", "1") == rec("1")   # still in the open batch
    assert store.commit(POS1) == 1
    assert store.stats()["entries"] == 1


def test_dirty_counts_sealed_and_open(store: LmdbStateStore) -> None:
    store.put(0, rec("1"))
    layer = store.seal(POS1)
    store.put(0, rec("2"))
    assert store.dirty == 2
    store.write(layer)
    store.release_written()
    assert store.dirty == 1
    store.rollback()
    assert store.dirty == 0 and store.get(0, "Order", "1") == rec("1") and store.get(0, "Order", "2") is None
    assert store.commit(POS3) == 2


def test_batches_are_written_in_sealing_order(store: LmdbStateStore) -> None:
    store.put(0, rec("1", total="1.00"))
    first = store.seal(POS1, {"batch": 1})
    store.put(0, rec("1", seq=2, total="2.00"))
    second = store.seal(POS2, {"batch": 2})
    store.write(second)                       # out of order: deferred, nothing written
    assert second.state == "deferred" and store.applied_position() is None
    store.mark_committed(first)
    store.wait_written(keep=0)                # first, then second (deferred), on this thread
    assert first.state == second.state == "written"
    assert committed(store, 0, "1").state["total"] == "2.00"
    assert store.applied_position() == POS2 and store.meta()["batch"] == 2


def test_wait_written_keeps_the_newest_pending(store: LmdbStateStore) -> None:
    store.put(0, rec("1"))
    first = store.seal(POS1)
    store.mark_committed(first)
    store.put(0, rec("2"))
    store.seal(POS2)                          # being published: not marked committed yet
    store.wait_written(keep=1)
    assert first.state == "written" and store.dirty == 1
    with pytest.raises(StateStoreError, match="never handed"):
        store.wait_written(keep=0)


def test_a_full_map_grows_and_writes_the_later_batches_too(path: Path) -> None:
    with LmdbStateStore(path, partitions=2, map_size=64 * 1024) as s:
        for i in range(400):
            s.put(i % 2, rec(str(i), blob="x" * 2000))
        big = s.seal(POS1)
        s.put(0, rec("small"))
        small = s.seal(POS2)
        s.mark_committed(big)
        s.mark_committed(small)
        s.wait_written(keep=0)
        assert big.state == small.state == "written"
        assert s.stats()["entries"] == 401 and s.applied_position() == POS2


def test_close_writes_the_batches_marked_committed(path: Path) -> None:
    s = LmdbStateStore(path, partitions=4, map_size=1 << 20)
    s.put(0, rec("1"))
    s.mark_committed(s.seal(POS1))
    s.put(0, rec("2"))
    s.seal(POS2)                              # not marked committed (its Kafka transaction did not)
    s.close()
    with LmdbStateStore(path, partitions=4) as again:
        assert again.applied_position() == POS1
        assert again.get(0, "Order", "1") is not None and again.get(0, "Order", "2") is None


def test_bound_pending_waits_for_the_oldest_writes(store: LmdbStateStore) -> None:
    layers = []
    for i in range(5):
        store.put(0, rec(str(i)))
        layer = store.seal(SourcePosition(f"0-1-{20 + i}", "mysql-bin.000001", 5000 + i))
        layers.append(layer)
        store.mark_committed(layer)
    store.bound_pending(max_batches=2, max_entries=10_000)
    assert all(x.state == "written" for x in layers[:3]) and store.dirty <= 2
    store.bound_pending(max_batches=16, max_entries=0)     # entries bound: everything written
    assert store.dirty == 0 and store.applied_position().binlog_pos == 5004


def test_marked_batches_wait_for_the_owner_and_reads_see_them_meanwhile(store: LmdbStateStore) -> None:
    """mark_committed() (any thread) writes nothing itself: the owning thread's next release_written() does,
    in sealing order; until then reads see the sealed batch."""
    store.put(0, rec("1", total="1.00"))
    first = store.seal(POS1, {"batch": 1})
    store.mark_committed(first)
    assert first.state is None and store.applied_position() is None
    assert store.get(0, "Order", "1").state["total"] == "1.00"
    store.release_written()
    assert first.state == "written" and store.applied_position() == POS1 and store.dirty == 0


@pytest.mark.parametrize("sequence, binlog_pos, held_since", [
    (3, 4000, None), (7, 4000, 1_767_225_600.25), (2**70, 4000, None), (3, 2**65, None), (0, 4000, 1e-7)])
def test_records_read_back_as_written(sequence: int, binlog_pos: int, held_since: float | None) -> None:
    """AggregateRecord.from_json(to_json()) gives the record back, exactly: the head read by orjson where its ints
    fit 64 bits, and as a whole (the stdlib) where they do not."""
    pos = SourcePosition("0-1-9", "mysql-bin.000002", binlog_pos)
    for rec in (AggregateRecord("Order", "42", {"exists": True, "n": [1.5, "é"]}, sequence, pos, held_since),
                AggregateRecord("Order", "42", None, sequence, None, held_since, state_json=b'{"exists":true}')):
        back = AggregateRecord.from_json(rec.to_json())
        assert back == rec and type(back.sequence) is int and back.to_json() == rec.to_json()
        assert back.last_position is None or type(back.last_position.binlog_pos) is int


def test_fault_injection_holds_marked_batches_without_holding_the_caller(path: Path, monkeypatch) -> None:
    """CDC_BRIDGE_FAULT_DELAY_LMDB_WRITE_MS (crash tests): LMDB falls behind while release_written() returns at
    once, one hold per batch in order (a slow disk: the lag grows with the batches); wait_written() and close()
    wait for the holds and write."""
    monkeypatch.setenv("CDC_BRIDGE_FAULT_DELAY_LMDB_WRITE_MS", "300")
    s = LmdbStateStore(path, partitions=2, map_size=1 << 20)
    s.put(0, rec("1"))
    first = s.seal(POS1)
    s.mark_committed(first)
    t0 = time.monotonic()
    s.release_written()
    assert time.monotonic() - t0 < 0.2 and first.state is None and s.applied_position() is None
    s.put(0, rec("2"))
    second = s.seal(POS2)
    s.mark_committed(second)
    s.wait_written(keep=1)   # the oldest only: the main loop is held for one batch, as by a slow disk
    assert 0.25 < time.monotonic() - t0 < 0.5 and first.state == "written" and second.state is None
    s.wait_written(keep=0)
    assert 0.55 < time.monotonic() - t0 and second.state == "written"
    s.put(0, rec("3"))
    s.mark_committed(s.seal(POS3))
    s.close()
    with LmdbStateStore(path, partitions=2) as again:
        assert again.applied_position() == POS3
