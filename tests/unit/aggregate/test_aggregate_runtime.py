"""The runtime over a real LMDB store (tmp_path): sequences, idempotence, replay, held bounds, envelopes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.aggregate.exceptions import UnknownAggregateError
from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.aggregate.runtime import AggregateRuntime, ApplyResult
from cdc_bridge.aggregate.testing import T0, Row, SourceScript, delete, insert, update
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.state.lmdb_store import LmdbStateStore

ORDER = dict(order_id=42, customer_id=7, status="pending", total="30.00", currency="EUR", created_at="2026-01-01T10:00:00")
P = 4


def order(oid: str, **over: Any) -> dict[str, Any]:
    return {**ORDER, "order_id": int(oid), **over}


def line(n: int, **over: Any) -> dict[str, Any]:
    return {"line_id": n, "sku": f"SKU-{n}", "quantity": 1, "unit_price": "10.00", **over}


@pytest.fixture
def store(tmp_path: Path):
    s = LmdbStateStore(tmp_path / "state", partitions=P, map_size=1 << 22)
    yield s
    s.close()


def make_runtime(mapping: AggregateMapping, store: LmdbStateStore, age: float | None = 3600.0,
                 count: int | None = 1000) -> AggregateRuntime:
    return AggregateRuntime.from_mappings([mapping], store, held_max_age_seconds=age, held_max_count=count)


@pytest.fixture
def runtime(orders_mapping: AggregateMapping, store: LmdbStateStore) -> AggregateRuntime:
    return make_runtime(orders_mapping, store)


def apply(runtime: AggregateRuntime, src: SourceScript, *rows: Row, at: float | None = None) -> ApplyResult:
    cmds, txn = src.txn(*rows, at=at)
    return runtime.apply(cmds, txn)


def ids(result: ApplyResult) -> list[str]:
    return [e.event_id for e in result.events]


# ---------------------------------------------------------------------------- sequences, envelope


def test_sequences_start_at_one_and_have_no_gaps_per_aggregate(runtime: AggregateRuntime, src: SourceScript) -> None:
    r1 = apply(runtime, src, insert("root", "42", **order("42")), insert("root", "43", **order("43")))
    r2 = apply(runtime, src, insert("lines", "42", "1", **line(1)), update("root", "42", **order("42", status="paid")))
    r3 = apply(runtime, src, update("root", "43", **order("43", total="1.00")))
    # a held child (internal draft) takes no number
    r4 = apply(runtime, src, insert("lines", "99", "1", **line(1)), update("lines", "42", "1", **line(1, quantity=2)))
    assert ids(r1) == ["Order:42:1", "Order:43:1"]
    assert ids(r2) == ["Order:42:2", "Order:42:3"]
    assert ids(r3) == ["Order:43:2"]
    assert ids(r4) == ["Order:42:4"]
    runtime.commit(src.txn()[1].position)
    rec = runtime.store.get(partition_for("42", P), "Order", "42")
    assert rec is not None and rec.sequence == 4


def test_event_envelope(runtime: AggregateRuntime, src: SourceScript, orders_mapping: AggregateMapping) -> None:
    cmds, txn = src.txn(insert("root", "42", **order("42")), insert("lines", "42", "1", **line(1)), at=T0 + 0.25)
    [ev] = runtime.apply(cmds, txn).events
    assert isinstance(ev, DomainEvent)
    assert ev.topic == "shop.order.events" == orders_mapping.events_topic
    assert ev.envelope() == {
        "event_id": "Order:42:1",
        "event_type": "OrderPlaced",
        "aggregate": "Order",
        "aggregate_id": "42",
        "sequence": 1,
        "schema_version": 1,
        "occurred_at": "2026-01-01T00:00:00.250000Z",
        "source": {"table": "shop.orders", "gtid": "0-1-1", "binlog_file": "mysql-bin.000001",
                   "binlog_pos": 1000, "txn_id": "0-1-1"},
        "data": {**order("42"), "lines": [line(1)]},
    }
    assert ev.key() == b"42"
    assert dict(ev.headers()) == {"event_type": b"OrderPlaced", "event_id": b"Order:42:1"}
    assert json.loads(ev.value().decode("utf-8")) == ev.envelope()
    assert ev.tombstone_after is False


def test_schema_version_and_topic_come_from_the_mapping(orders_mapping: AggregateMapping, store: LmdbStateStore,
                                                        src: SourceScript) -> None:
    m = orders_mapping.model_copy(update={"schema_version": 3})
    rt = AggregateRuntime.from_mappings([m], store, held_max_age_seconds=None, held_max_count=None)
    [ev] = apply(rt, src, insert("root", "1", **order("1"))).events
    assert ev.schema_version == 3


def test_delete_then_recreate_keeps_the_sequence_increasing(runtime: AggregateRuntime, src: SourceScript) -> None:
    seen = []
    seen += ids(apply(runtime, src, insert("root", "42", **order("42"))))
    seen += ids(apply(runtime, src, delete("root", "42", **order("42"))))
    runtime.commit(src.txn()[1].position)
    seen += ids(apply(runtime, src, insert("root", "42", **order("42", status="paid"))))
    seen += ids(apply(runtime, src, update("root", "42", **order("42", status="shipped"))))
    assert seen == ["Order:42:1", "Order:42:2", "Order:42:3", "Order:42:4"]
    rec = runtime.store.get(partition_for("42", P), "Order", "42")
    assert rec is not None and rec.state["exists"] is True and rec.sequence == 4


def test_deleted_aggregate_keeps_a_tombstone_record_with_its_sequence(runtime: AggregateRuntime,
                                                                       src: SourceScript) -> None:
    apply(runtime, src, insert("root", "42", **order("42")), insert("lines", "42", "1", **line(1)))
    [ev] = apply(runtime, src, delete("root", "42", **order("42"))).events
    assert ev.event_type == "OrderDeleted" and ev.data["lines"] == [line(1)]
    rec = runtime.store.get(partition_for("42", P), "Order", "42")
    assert rec is not None and rec.sequence == 2
    assert rec.state == {"exists": False, "deleted": True, "root": None, "children": {}, "held": {}}


def test_rejections_come_back_as_dead_letters(runtime: AggregateRuntime, src: SourceScript) -> None:
    r = apply(runtime, src, update("root", "5", **order("5")), insert("root", "6", **order("6")))
    assert [d.reason for d in r.dead_letters] == ["update_of_unknown_aggregate"]
    assert ids(r) == ["Order:6:1"]
    assert r.dead_letters[0].to_json_dict()["position"]["binlog_pos"] == 1000


def test_unknown_aggregate_is_an_error(runtime: AggregateRuntime, src: SourceScript) -> None:
    cmds, txn = src.txn(insert("root", "1", **order("1")))
    with pytest.raises(UnknownAggregateError, match="Invoice"):
        runtime.apply([cmds[0].model_copy(update={"aggregate": "Invoice"})], txn)


def test_partition_count_must_match_the_store(orders_mapping: AggregateMapping, store: LmdbStateStore) -> None:
    from cdc_bridge.aggregate.declarative import DeclarativeDecider

    with pytest.raises(ValueError, match="partitions"):
        AggregateRuntime({"Order": DeclarativeDecider(orders_mapping)}, [orders_mapping], store, P + 1, None, None, {})


def test_records_are_routed_to_their_partition(runtime: AggregateRuntime, src: SourceScript) -> None:
    keys = [str(i) for i in range(20)]
    apply(runtime, src, *[insert("root", k, **order(k)) for k in keys])
    runtime.commit(src.txn()[1].position)
    for k in keys:
        p = partition_for(k, P)
        assert runtime.store.get(p, "Order", k) is not None
        assert all(runtime.store.get(q, "Order", k) is None for q in range(P) if q != p)
    assert sum(len(list(runtime.store.records(p))) for p in range(P)) == 20


# ---------------------------------------------------------------------------- idempotence, replay


def _history(src: SourceScript) -> list[tuple[list, Any]]:
    return [
        src.txn(insert("lines", "1", "1", **line(1))),
        src.txn(insert("root", "1", **order("1")), insert("root", "2", **order("2"))),
        src.txn(update("root", "1", **order("1", status="paid")), insert("lines", "2", "5", **line(5))),
        src.txn(update("lines", "1", "1", **line(1, quantity=3)), update("root", "9", **order("9"))),
        src.txn(delete("root", "2", **order("2")), insert("lines", "3", "1", **line(1))),
        src.txn(insert("root", "2", **order("2", status="paid"))),
    ]


def _dump(result: ApplyResult) -> tuple[list[dict], list[dict]]:
    return [e.envelope() | {"topic": e.topic} for e in result.events], [d.to_json_dict() for d in result.dead_letters]


def _state(store: LmdbStateStore) -> dict[str, Any]:
    return {f"{r.aggregate}:{r.aggregate_id}": r.to_json_dict() for p in range(store.partitions) for r in store.records(p)}


def test_reapplying_applied_transactions_changes_nothing_and_emits_nothing(runtime: AggregateRuntime,
                                                                           src: SourceScript) -> None:
    history = _history(src)
    first = [runtime.apply(c, t) for c, t in history]
    assert sum(len(r.events) for r in first) > 0
    runtime.commit(history[-1][1].position)
    before = _state(runtime.store)
    again = [runtime.apply(c, t) for c, t in history]
    assert all(r.events == [] and r.dead_letters == [] for r in again)
    assert sum(r.skipped for r in again) == sum(len(c) for c, _ in history)
    runtime.commit(history[-1][1].position)
    assert _state(runtime.store) == before


def test_replaying_from_an_older_state_reproduces_the_same_events(orders_mapping: AggregateMapping, tmp_path: Path,
                                                                 src: SourceScript) -> None:
    # Kafka committed a batch that LMDB did not: recovery re-applies it to the older state and
    # must obtain exactly the events Kafka already has (same ids, sequences, payloads).
    history = _history(src)
    store = LmdbStateStore(tmp_path / "s", partitions=P)
    rt = make_runtime(orders_mapping, store)
    for c, t in history[:2]:
        rt.apply(c, t)
    rt.commit(history[1][1].position)
    published = [_dump(rt.apply(c, t)) for c, t in history[2:]]   # the batch Kafka got
    store.close()                                                  # crash before the LMDB commit

    store = LmdbStateStore(tmp_path / "s", partitions=P)
    assert store.applied_position() == history[1][1].position
    rt = make_runtime(orders_mapping, store)
    replayed = [_dump(rt.apply(c, t)) for c, t in history[2:]]
    assert replayed == published
    store.close()


def test_rollback_then_redo_gives_the_same_result(runtime: AggregateRuntime, src: SourceScript) -> None:
    history = _history(src)
    runtime.apply(*history[0])
    runtime.commit(history[0][1].position)
    first = [_dump(runtime.apply(c, t)) for c, t in history[1:]]
    runtime.rollback()
    assert runtime.store.get(partition_for("1", P), "Order", "1").state["exists"] is False
    second = [_dump(runtime.apply(c, t)) for c, t in history[1:]]
    assert second == first


# ---------------------------------------------------------------------------- held children bounds


def test_held_child_expires_by_age_in_source_time(orders_mapping: AggregateMapping, store: LmdbStateStore,
                                                   src: SourceScript) -> None:
    rt = make_runtime(orders_mapping, store, age=60.0)
    r = apply(rt, src, insert("lines", "42", "1", **line(1)), at=T0)
    assert r.events == [] and r.dead_letters == []
    assert rt.held_stats() == (1, T0)
    # exactly the maximum age later: still held
    assert apply(rt, src, insert("root", "1", **order("1")), at=T0 + 60).dead_letters == []
    # later than that, whatever the transaction is about: the child leaves as an orphan
    r = apply(rt, src, insert("root", "2", **order("2")), at=T0 + 61)
    [dl] = r.dead_letters
    assert dl.reason == "orphan"
    assert (dl.aggregate, dl.aggregate_id, dl.table) == ("Order", "42", "shop.order_lines")
    assert dl.record == {"entity": "lines", "entity_id": "1", "payload": line(1),
                         "held_since": "2026-01-01T00:00:00.000000Z"}
    assert dl.txn_id == "0-1-1" and dl.position is not None and dl.position.binlog_pos == 1000
    assert rt.held_stats() == (0, None)
    rec = store.get(partition_for("42", P), "Order", "42")
    assert rec is not None and rec.state["held"] == {} and rec.held_since is None and rec.sequence == 0
    # the parent arriving later is created without it
    [ev] = apply(rt, src, insert("root", "42", **order("42")), at=T0 + 62).events
    assert ev.data["lines"] == []


def test_parent_arriving_in_time_takes_its_held_children(orders_mapping: AggregateMapping, store: LmdbStateStore,
                                                          src: SourceScript) -> None:
    rt = make_runtime(orders_mapping, store, age=60.0)
    apply(rt, src, insert("lines", "42", "1", **line(1)), at=T0)
    r = apply(rt, src, insert("root", "42", **order("42")), at=T0 + 30)
    assert r.events[0].data["lines"] == [line(1)]
    assert rt.held_stats() == (0, None)
    assert apply(rt, src, insert("root", "3", **order("3")), at=T0 + 1000).dead_letters == []


def test_held_expiry_ignores_the_wall_clock(orders_mapping: AggregateMapping, store: LmdbStateStore) -> None:
    # Source time years in the past: nothing expires while the source does not move on.
    src = SourceScript(orders_mapping, start_ts=1_000_000_000.0)
    rt = make_runtime(orders_mapping, store, age=1.0)
    apply(rt, src, insert("lines", "42", "1", **line(1)))
    assert rt.expire_held(1_000_000_000.5) == []
    assert rt.held_stats()[0] == 1
    assert [d.reason for d in rt.expire_held(1_000_000_002.0)] == ["orphan"]


def test_held_children_are_bounded_per_partition_oldest_first(orders_mapping: AggregateMapping, tmp_path: Path,
                                                              src: SourceScript) -> None:
    store = LmdbStateStore(tmp_path / "one", partitions=1)
    rt = make_runtime(orders_mapping, store, age=None, count=2)
    apply(rt, src, insert("lines", "a", "1", **line(1)), at=T0 + 1)
    apply(rt, src, insert("lines", "b", "1", **line(1)), insert("lines", "b", "2", **line(2)), at=T0 + 2)
    assert rt.held_stats() == (3 - 1, T0 + 2)   # a/1 went: the oldest
    r = apply(rt, src, insert("lines", "c", "1", **line(1)), at=T0 + 3)
    [dl] = r.dead_letters
    assert dl.reason == "orphan" and (dl.aggregate_id, dl.record["entity_id"]) == ("b", "1")
    assert "more than 2" in dl.detail
    assert rt.held_stats() == (2, T0 + 2)
    rt.commit(src.txn()[1].position)
    assert store.held_stats() == (2, T0 + 2)
    assert [(h.aggregate_id, h.entity_id) for h in store.held_oldest(0)] == [("b", "2"), ("c", "1")]
    store.close()


def test_first_count_eviction_is_reported(orders_mapping: AggregateMapping, tmp_path: Path, src: SourceScript) -> None:
    store = LmdbStateStore(tmp_path / "one", partitions=1)
    rt = make_runtime(orders_mapping, store, age=None, count=1)
    apply(rt, src, insert("lines", "a", "1", **line(1)))
    r = apply(rt, src, insert("lines", "b", "1", **line(1)))
    assert [(d.reason, d.aggregate_id) for d in r.dead_letters] == [("orphan", "a")]
    store.close()


def test_held_index_follows_held_children_through_commit_and_adoption(runtime: AggregateRuntime,
                                                                      src: SourceScript) -> None:
    apply(runtime, src, insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)), at=T0)
    apply(runtime, src, delete("lines", "42", "2", **line(2)), at=T0 + 5)
    assert runtime.held_stats() == (1, T0)
    runtime.commit(src.txn()[1].position)
    assert runtime.held_stats() == (1, T0)
    rec = runtime.store.get(partition_for("42", P), "Order", "42")
    assert rec is not None and rec.held_since == T0
    apply(runtime, src, insert("root", "42", **order("42")), at=T0 + 10)
    assert runtime.held_stats() == (0, None)
    runtime.rollback()
    assert runtime.held_stats() == (1, T0)


def test_expiry_is_deterministic_across_rollback(orders_mapping: AggregateMapping, store: LmdbStateStore,
                                                 src: SourceScript) -> None:
    rt = make_runtime(orders_mapping, store, age=10.0)
    apply(rt, src, insert("lines", "42", "1", **line(1)), at=T0)
    rt.commit(src.txn()[1].position)
    cmds, txn = src.txn(insert("root", "1", **order("1")), at=T0 + 100)
    first = _dump(rt.apply(cmds, txn))
    assert [d["reason"] for d in first[1]] == ["orphan"]
    rt.rollback()
    assert _dump(rt.apply(cmds, txn)) == first


# ---------------------------------------------------------------------------- sink directives, ordering


def test_deleted_events_carry_the_tombstone_directive_when_the_mapping_asks(runtime: AggregateRuntime,
                                                                            src: SourceScript) -> None:
    from cdc_bridge.aggregate.event import TOMBSTONE_HEADER

    apply(runtime, src, insert("root", "42", **order("42")))
    runtime.deciders["Order"].tombstone_on_delete = True   # `tombstone_on_delete: true` in the mapping
    runtime.deciders["Order"] = copy.copy(runtime.deciders["Order"])   # a new decider: its compiled core is rebuilt
    [ev] = apply(runtime, src, delete("root", "42", **order("42"))).events
    assert ev.extra_headers == {TOMBSTONE_HEADER: "1"} and ev.tombstone_after
    assert dict(ev.headers()) == {"event_type": b"OrderDeleted", "event_id": b"Order:42:2"}


def test_a_line_moved_to_another_order_leaves_one_and_joins_the_other(runtime: AggregateRuntime,
                                                                      src: SourceScript) -> None:
    # The translator turns a parent_key change into delete(old) + insert(new) with the same index.
    apply(runtime, src, insert("root", "1", **order("1")), insert("root", "2", **order("2")),
          insert("lines", "1", "5", **line(5)))
    cmds, txn = src.txn(delete("lines", "1", "5", **line(5)), insert("lines", "2", "5", **line(5)))
    cmds = [c.model_copy(update={"index": 0}) for c in cmds]
    r = runtime.apply(cmds, txn)
    assert [(e.event_type, e.aggregate_id) for e in r.events] == [("OrderLineRemoved", "1"), ("OrderLineAdded", "2")]


def test_a_row_whose_id_changed_is_deleted_then_inserted_in_order(runtime: AggregateRuntime,
                                                                 src: SourceScript) -> None:
    apply(runtime, src, insert("root", "1", **order("1")), insert("lines", "1", "5", **line(5)))
    cmds, txn = src.txn(delete("lines", "1", "5", **line(5)), insert("lines", "1", "6", **line(6)))
    cmds = [c.model_copy(update={"index": 3}) for c in cmds]
    r = runtime.apply(cmds, txn)
    assert [e.event_type for e in r.events] == ["OrderLineRemoved", "OrderLineAdded"]


def test_a_failing_decider_is_reported_with_the_instance_and_transaction(runtime: AggregateRuntime,
                                                                         src: SourceScript) -> None:
    from cdc_bridge.aggregate.exceptions import DeciderError

    class Broken:
        aggregate = "Order"

        def initial_state(self):
            return {}

        def decide(self, state, commands):
            raise KeyError("status")

        def evolve(self, state, event):
            return state

    runtime.deciders["Order"] = Broken()
    with pytest.raises(DeciderError, match=r"Broken failed on Order 42 in source transaction 0-1-1 .*KeyError"):
        apply(runtime, src, insert("root", "42", **order("42")))


def test_enrichment_is_the_root_at_the_end_of_the_source_transaction(runtime: AggregateRuntime,
                                                                      src: SourceScript) -> None:
    """docs/mappings.md's example: a line inserted, then its order paid, in one transaction."""
    apply(runtime, src, insert("root", "42", **order("42")))
    result = apply(runtime, src, insert("lines", "42", "9", **line(9)),
                   update("root", "42", before=order("42"), **order("42", status="paid")))
    assert [e.event_type for e in result.events] == ["OrderLineAdded", "OrderPaid"]
    assert result.events[0].data["order"] == {"customer_id": 7, "status": "paid"}


# ---------------------------------------------------------------------------- commands of other transactions


def test_commands_of_two_transactions_are_skipped_or_applied_each_by_its_own_position(
        runtime: AggregateRuntime, src: SourceScript) -> None:
    """Hand-made commands whose positions are not all the transaction's (the pipeline never makes them:
    its commands share their transaction's) are skipped or applied one by one, by the Python decider."""
    first, t1 = src.txn(insert("root", "1", **order("1")))
    second, t2 = src.txn(update("root", "1", **order("1", status="paid")))
    runtime.apply(first, t1)
    runtime.commit(t1.position)
    result = runtime.apply(first + second, t2)   # t1's command is already applied, t2's is new
    assert result.skipped == 1
    assert [e.event_type for e in result.events] == ["OrderPaid"]
    record = runtime.store.get(partition_for("1", P), "Order", "1")
    assert record is not None and record.sequence == 2 and record.state["root"]["status"] == "paid"


def test_the_compiled_and_the_python_apply_give_the_same_events_and_state(
        orders_mapping: AggregateMapping, tmp_path: Path, src: SourceScript, monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history(src)
    outcomes = []
    for native in ("1", "0"):
        monkeypatch.setenv("CDC_BRIDGE_NATIVE_APPLY", native)
        store = LmdbStateStore(tmp_path / f"state-{native}", partitions=P, map_size=1 << 22)
        try:
            runtime = make_runtime(orders_mapping, store)
            results = [_dump(runtime.apply(c, t)) for c, t in history]
            runtime.commit(history[-1][1].position)
            outcomes.append((results, _state(store),
                             [r.state_json for p in range(P) for r in store.records(p)]))
        finally:
            store.close()
    assert outcomes[0][0] == outcomes[1][0] and outcomes[0][1] == outcomes[1][1]
    assert outcomes[0][2] == outcomes[1][2]   # the stored state JSON, byte for byte
