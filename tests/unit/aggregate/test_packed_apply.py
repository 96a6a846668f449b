"""The packed hand-off (mapping/packed.py, native/src/packed.rs): what the reader process packs, the runtime
applies exactly as it applies the wire tuples: the same events (record values), dead letters and state,
through the compiled core and through the Python path (CDC_BRIDGE_NATIVE_APPLY=0)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cdc_bridge.aggregate import native as native_mod
from cdc_bridge.aggregate.runtime import AggregateRuntime
from cdc_bridge.mapping.packed import PackedCommands, pack
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.mapping.translate import SIGNAL_AGGREGATE
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import SourceTransaction
from cdc_bridge.state.lmdb_store import LmdbStateStore

_native = native_mod._native
pytestmark = pytest.mark.skipif(_native is None, reason="cdc_bridge._native is not built: nothing is packed")

P = 4


def wire_stream(rng: random.Random, n_txns: int, n_orders: int):
    """Source transactions over the orders mapping as wire tuples (command_to_wire's form), commands of
    several orders interleaved: orders with lines, status changes, deletes (soft too), lines ahead of
    their order, snapshots."""
    statuses = ["pending", "paid", "shipped", "cancelled", "refunded"]
    ts = 1_767_225_600.0
    for n in range(1, n_txns + 1):
        ts += rng.choice([0.0, 0.25, 1.0, 4000.0 if rng.random() < 0.01 else 0.5])
        wire = []
        for index in range(rng.randint(1, 12)):
            oid = str(rng.randint(1, n_orders))
            if rng.random() < 0.35:
                entity, eid, table = "root", oid, "shop.orders"
                payload = {"order_id": int(oid), "customer_id": rng.randint(1, 50), "status": rng.choice(statuses),
                           "total": f"{rng.randint(0, 99999) / 100:.2f}", "currency": rng.choice(["EUR", "USD"]),
                           "created_at": "2026-01-01T10:00:00"}
            else:
                entity, eid, table = "lines", str(rng.randint(1, 12)), "shop.order_lines"
                payload = {"line_id": int(eid), "sku": rng.choice(["A-1", "B-2", "C-\u00e9", "D\n"]),
                           "quantity": rng.randint(1, 5), "unit_price": f"{rng.randint(1, 9999) / 100:.2f}",
                           "weight": rng.choice([None, 0.5, -0.0, 1e-7, 2.5e16])}
            op = rng.choice(["insert", "insert", "update", "update", "update", "delete", "snapshot"])
            soft = entity == "root" and op == "delete" and rng.random() < 0.4
            wire.append(("Cmd", "Order", oid, entity, eid, op, payload, dict(payload) if op == "delete" else None,
                         table, index, soft))
        pos = SourcePosition(f"0-1-{n}", "mysql-bin.000007", 4000 + 100 * n)
        yield SourceTransaction(f"0-1-{n}", ts, pos), wire


def records(store: LmdbStateStore) -> list:
    return [(r.aggregate, r.aggregate_id, r.sequence, r.last_position, r.held_since, r.state_json)
            for p in range(P) for r in store.records(p)]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_packed_applies_as_the_wire_tuples(tmp_path: Path, orders_mapping: AggregateMapping, compiled: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if compiled:
        monkeypatch.delenv("CDC_BRIDGE_NATIVE_APPLY", raising=False)
    else:
        monkeypatch.setenv("CDC_BRIDGE_NATIVE_APPLY", "0")
    stores = [LmdbStateStore(tmp_path / name, partitions=P, map_size=1 << 24) for name in ("wire", "packed")]
    by_wire, by_packed = (AggregateRuntime.from_mappings([orders_mapping], s, held_max_age_seconds=3600.0,
                                                         held_max_count=40) for s in stores)
    totals = {"events": 0, "dead_letters": 0, "skipped": 0}
    try:
        for n, (txn, wire) in enumerate(wire_stream(random.Random(3), 1500, 40), start=1):
            packed = pack([tuple(w) for w in wire])
            assert packed is not None
            a = by_wire.apply_wire(wire, txn)
            b = by_packed.apply_packed(packed.groups, txn)
            assert [(e.event_id, e.topic, e.value_json if compiled else e.envelope()) for e in b.events] == \
                [(e.event_id, e.topic, e.value_json if compiled else e.envelope()) for e in a.events]
            assert [d.to_json_dict() for d in b.dead_letters] == [d.to_json_dict() for d in a.dead_letters]
            assert b.skipped == a.skipped
            totals["events"] += len(a.events)
            totals["dead_letters"] += len(a.dead_letters)
            if n % 100 == 0:
                for rt in (by_wire, by_packed):
                    rt.commit(txn.position)
                assert records(stores[1]) == records(stores[0])
                # the same transaction again (a replay after a crash): skipped both ways
                again = by_packed.apply_packed(packed.groups, txn)
                assert again.skipped == sum(g[2] for g in packed.groups) and not again.events
        assert totals["events"] > 3000 and totals["dead_letters"] > 100, totals
    finally:
        for s in stores:
            s.close()


def test_groups_follow_the_runtime_order_and_unpack_to_the_tuples() -> None:
    w = [("C", "Order", "2", "lines", "1", "insert", {"x": 1}, None, "shop.order_lines", 2, False),
         ("C", "Order", "1", "root", "1", "insert", {"y": "é"}, None, "shop.orders", 0, False),
         ("C", "Order", "2", "root", "2", "insert", {"z": 2**63}, None, "shop.orders", 1, False),
         ("C", "Customer", "1", "root", "1", "update", {"n": [1.5, {"k": None}]}, {"n": []}, "shop.customers", 3, True)]
    packed = pack(list(w))
    assert packed is not None
    assert [(a, i, n) for a, i, n, _ in packed.groups] == [("Order", "2", 2), ("Order", "1", 1), ("Customer", "1", 1)]
    # each group in binlog order (index), as AggregateRuntime.apply_wire sorts it
    assert packed.wire() == [w[2], w[0], w[1], w[3]]
    assert packed.counts == {("shop.order_lines", "insert"): 1, ("shop.orders", "insert"): 2,
                             ("shop.customers", "update"): 1}
    assert PackedCommands(*packed.to_tuple()).wire() == packed.wire()


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), (1, 2), {1: "int key"}, b"bytes", True.__class__],
                         ids=["nan", "inf", "tuple", "int-key", "bytes", "type"])
def test_values_the_compiled_apply_does_not_take_are_not_packed(odd) -> None:
    """The reader then sends the wire tuples, as before (the Python path decides what they mean)."""
    w = [("C", "Order", "1", "root", "1", "insert", {"v": odd}, None, "shop.orders", 0, False)]
    assert pack(w) is None


def test_a_signal_row_is_not_packed_nor_is_nothing() -> None:
    w = [("C", "Order", "1", "root", "1", "insert", {}, None, "shop.orders", 0, False),
         ("C", SIGNAL_AGGREGATE, "1", "root", "1", "insert", {}, None, "ops.signal", 1, False)]
    assert pack(w) is None
    assert pack([]) is None
