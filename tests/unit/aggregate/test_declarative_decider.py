"""The declarative decider's rules, given/when/then, on the orders example mapping."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from cdc_bridge.aggregate.declarative import DeclarativeDecider, singular_pascal
from cdc_bridge.aggregate.decider import Decision
from cdc_bridge.aggregate.exceptions import MappingRuleError
from cdc_bridge.aggregate.testing import (Row, SourceScript, decide_and_evolve, delete, insert, snapshot, soft_delete,
                                          update)
from cdc_bridge.mapping.schema import AggregateMapping

ORDER = dict(order_id=42, customer_id=7, status="pending", total="30.00", currency="EUR", created_at="2026-01-01T10:00:00")


def line(n: int, **over: Any) -> dict[str, Any]:
    return {"line_id": n, "sku": f"SKU-{n}", "quantity": 1, "unit_price": "10.00", **over}


class Given:
    """Applies earlier source transactions, then exposes the state for the `when`."""

    def __init__(self, decider: DeclarativeDecider, src: SourceScript):
        self.decider, self.src = decider, src
        self.state = decider.initial_state()

    def txn(self, *rows: Row, at: float | None = None) -> Decision:
        cmds, _ = self.src.txn(*rows, at=at)
        self.state, decision = decide_and_evolve(self.decider, self.state, cmds)
        return decision


@pytest.fixture
def given(decider: DeclarativeDecider, src: SourceScript) -> Given:
    return Given(decider, src)


def published(decision: Decision) -> list[str]:
    return [e.event_type for e in decision.events if not e.internal]


def only_event(decision: Decision):
    events = [e for e in decision.events if not e.internal]
    assert len(events) == 1, [e.event_type for e in events]
    return events[0]


# ---------------------------------------------------------------------------- root insert


def test_root_insert_emits_created_with_full_fields_and_empty_collections(given: Given) -> None:
    d = given.txn(insert("root", "42", **ORDER))
    ev = only_event(d)
    assert ev.event_type == "OrderPlaced"
    assert ev.data == {**ORDER, "lines": []}
    assert ev.table == "shop.orders"
    assert d.rejections == []
    assert given.state["exists"] is True


def test_order_and_three_lines_in_one_transaction_is_one_created_event(given: Given) -> None:
    d = given.txn(
        insert("root", "42", **ORDER),
        insert("lines", "42", "1", **line(1)),
        insert("lines", "42", "2", **line(2)),
        insert("lines", "42", "3", **line(3)),
    )
    ev = only_event(d)
    assert ev.event_type == "OrderPlaced"
    assert ev.data["lines"] == [line(1), line(2), line(3)]
    assert set(given.state["children"]["lines"]) == {"1", "2", "3"}


def test_lines_written_before_their_order_in_the_same_transaction_are_carried(given: Given) -> None:
    d = given.txn(
        insert("lines", "42", "1", **line(1)),
        insert("lines", "42", "2", **line(2)),
        insert("root", "42", **ORDER),
    )
    assert published(d) == ["OrderPlaced"]
    assert only_event(d).data["lines"] == [line(1), line(2)]
    assert given.state["held"] == {}


def test_lines_held_in_earlier_transactions_are_carried_by_the_created_event(given: Given) -> None:
    d1 = given.txn(insert("lines", "42", "1", **line(1)))
    d2 = given.txn(insert("lines", "42", "2", **line(2)))
    assert published(d1) == [] and published(d2) == []
    assert all(e.internal for e in d1.events + d2.events)
    assert set(given.state["held"]["lines"]) == {"1", "2"}
    assert given.state["exists"] is False

    d3 = given.txn(insert("root", "42", **ORDER))
    ev = only_event(d3)
    assert ev.event_type == "OrderPlaced"
    assert ev.data["lines"] == [line(1), line(2)]
    assert given.state["held"] == {}
    assert set(given.state["children"]["lines"]) == {"1", "2"}


def test_held_child_updates_and_deletes_change_it_silently(given: Given) -> None:
    given.txn(insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)))
    d = given.txn(update("lines", "42", "1", **line(1, quantity=5)), delete("lines", "42", "2", **line(2)))
    assert published(d) == [] and d.rejections == []
    assert given.state["held"]["lines"]["1"]["fields"]["quantity"] == 5
    first_since = given.state["held"]["lines"]["1"]["since"]
    assert first_since == given.src.ts - 1.0  # an update keeps the time the child was first held

    d = given.txn(insert("root", "42", **ORDER))
    assert only_event(d).data["lines"] == [line(1, quantity=5)]


def test_root_update_after_create_in_the_same_transaction_folds_into_the_created_event(given: Given) -> None:
    d = given.txn(
        insert("root", "42", **ORDER),
        insert("lines", "42", "1", **line(1)),
        update("root", "42", **{**ORDER, "status": "paid"}),
        update("lines", "42", "1", **line(1, quantity=3)),
    )
    ev = only_event(d)
    assert ev.event_type == "OrderPlaced"
    assert ev.data["status"] == "paid"
    assert ev.data["lines"] == [line(1, quantity=3)]


def test_insert_of_an_existing_root_is_a_duplicate_create(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(insert("root", "42", **ORDER))
    assert published(d) == []
    [dl] = d.rejections
    assert dl.reason == "duplicate_create"
    assert dl.aggregate == "Order" and dl.aggregate_id == "42" and dl.table == "shop.orders"
    assert dl.record["operation"] == "insert" and dl.record["payload"] == ORDER
    assert dl.position is not None and dl.txn_id


# ---------------------------------------------------------------------------- root update


@pytest.mark.parametrize(
    "before,after,event",
    [
        ("pending", "paid", "OrderPaid"),
        ("paid", "shipped", "OrderShipped"),
        ("pending", "cancelled", "OrderCancelled"),   # from: "*"
        ("shipped", "cancelled", "OrderCancelled"),   # from: "*"
        ("pending", "shipped", "OrderUpdated"),       # no transition matches
        ("paid", "pending", "OrderUpdated"),
    ],
)
def test_status_change_emits_the_matching_transition_event(given: Given, before: str, after: str, event: str) -> None:
    given.txn(insert("root", "42", **{**ORDER, "status": before}))
    d = given.txn(update("root", "42", **{**ORDER, "status": after}))
    ev = only_event(d)
    assert ev.event_type == event
    assert ev.data == {**ORDER, "status": after, "changes": {"status": {"from": before, "to": after}}}


def test_update_of_other_fields_is_the_updated_event_with_changes(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(update("root", "42", **{**ORDER, "total": "45.00", "currency": "CHF"}))
    ev = only_event(d)
    assert ev.event_type == "OrderUpdated"
    assert ev.data["changes"] == {"total": {"from": "30.00", "to": "45.00"}, "currency": {"from": "EUR", "to": "CHF"}}
    assert given.state["root"]["total"] == "45.00"


def test_update_touching_only_unmapped_columns_emits_nothing(given: Given) -> None:
    # The mapped payload equals the before image: the row changed only in columns we do not carry.
    given.txn(insert("root", "42", **ORDER))
    state_before = copy.deepcopy(given.state)
    d = given.txn(update("root", "42", before=dict(ORDER), **ORDER))
    assert d.events == [] and d.rejections == []
    assert given.state == state_before


def test_transition_and_other_changes_in_one_update_is_the_transition_event(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    ev = only_event(given.txn(update("root", "42", **{**ORDER, "status": "paid", "total": "31.00"})))
    assert ev.event_type == "OrderPaid"
    assert set(ev.data["changes"]) == {"status", "total"}


def test_two_updates_of_an_existing_root_in_one_transaction_are_two_events_in_order(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(
        update("root", "42", **{**ORDER, "status": "paid"}),
        update("root", "42", **{**ORDER, "status": "shipped"}),
    )
    assert published(d) == ["OrderPaid", "OrderShipped"]


def test_update_of_an_unknown_root_is_rejected(given: Given) -> None:
    d = given.txn(update("root", "42", **ORDER))
    assert d.events == []
    [dl] = d.rejections
    assert dl.reason == "update_of_unknown_aggregate"
    assert dl.record["command_type"] and dl.record["entity"] == "root"


# ---------------------------------------------------------------------------- children


def test_line_added_to_an_existing_order_carries_the_order_context(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    ev = only_event(given.txn(insert("lines", "42", "1", **line(1))))
    assert ev.event_type == "OrderLineAdded"
    assert ev.table == "shop.order_lines"
    assert ev.data == {**line(1), "order": {"customer_id": 7, "status": "pending"}}


def test_line_changed_carries_changes_and_context(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    ev = only_event(given.txn(update("lines", "42", "1", **line(1, quantity=4))))
    assert ev.event_type == "OrderLineChanged"
    assert ev.data == {
        **line(1, quantity=4),
        "changes": {"quantity": {"from": 1, "to": 4}},
        "order": {"customer_id": 7, "status": "pending"},
    }


def test_line_update_changing_nothing_emits_nothing(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(update("lines", "42", "1", **line(1)))
    assert d.events == [] and d.rejections == []


def test_line_removed_carries_its_last_known_fields_and_context(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)))
    given.txn(update("lines", "42", "1", **line(1, quantity=9)))
    ev = only_event(given.txn(delete("lines", "42", "1", **line(1, quantity=9))))
    assert ev.event_type == "OrderLineRemoved"
    assert ev.data == {**line(1, quantity=9), "order": {"customer_id": 7, "status": "pending"}}
    assert set(given.state["children"]["lines"]) == {"2"}


def test_child_events_carry_the_context_as_of_the_end_of_the_transaction(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(insert("lines", "42", "1", **line(1)), update("root", "42", **{**ORDER, "status": "paid"}))
    assert published(d) == ["OrderLineAdded", "OrderPaid"]
    assert d.events[0].data["order"] == {"customer_id": 7, "status": "paid"}


def test_line_added_then_changed_in_one_transaction_is_one_added_event(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(insert("lines", "42", "1", **line(1)), update("lines", "42", "1", **line(1, quantity=2)))
    ev = only_event(d)
    assert ev.event_type == "OrderLineAdded" and ev.data["quantity"] == 2


def test_line_added_then_removed_in_one_transaction_emits_nothing(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    d = given.txn(insert("lines", "42", "1", **line(1)), delete("lines", "42", "1", **line(1)))
    assert published(d) == []
    assert given.state["children"]["lines"] == {}


def test_child_rejections(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(
        insert("lines", "42", "1", **line(1)),
        update("lines", "42", "9", **line(9)),
        delete("lines", "42", "8", **line(8)),
        insert("payments", "42", "1", amount=1),
    )
    assert [r.reason for r in d.rejections] == [
        "duplicate_create", "update_of_unknown_child", "delete_of_unknown_child", "unknown_entity",
    ]
    assert d.events == []


def test_update_or_delete_of_a_never_seen_child_without_its_root_is_rejected(given: Given) -> None:
    d = given.txn(update("lines", "42", "1", **line(1)), delete("lines", "42", "2", **line(2)))
    assert [r.reason for r in d.rejections] == ["update_of_unknown_child", "delete_of_unknown_child"]
    assert given.state["held"] == {}


# ---------------------------------------------------------------------------- root delete


def test_root_delete_emits_deleted_with_last_known_fields_and_children(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    given.txn(update("root", "42", **{**ORDER, "status": "paid"}))
    ev = only_event(given.txn(delete("root", "42", **{**ORDER, "status": "paid"})))
    assert ev.event_type == "OrderDeleted"
    assert ev.data == {**ORDER, "status": "paid", "lines": [line(1)]}
    assert given.state == {"exists": False, "deleted": True, "root": None, "children": {}, "held": {}}


def test_deleting_an_order_and_its_lines_in_one_transaction_is_one_deleted_event(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)))
    d = given.txn(
        delete("lines", "42", "1", **line(1)),
        delete("lines", "42", "2", **line(2)),
        delete("root", "42", **ORDER),
    )
    ev = only_event(d)
    assert ev.event_type == "OrderDeleted"
    assert sorted(x["line_id"] for x in ev.data["lines"]) == [1, 2]
    assert d.rejections == []


def test_line_deletes_after_their_order_was_deleted_are_absorbed(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(delete("root", "42", **ORDER), delete("lines", "42", "1", **line(1)))
    assert published(d) == ["OrderDeleted"] and d.rejections == []
    d = given.txn(delete("lines", "42", "1", **line(1)))  # a later transaction: still nothing to say
    assert d.events == [] and d.rejections == []


def test_created_and_deleted_in_one_transaction_emits_nothing(given: Given) -> None:
    d = given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), delete("root", "42", **ORDER))
    assert published(d) == []
    assert given.state["exists"] is False and given.state["children"] == {}


def test_deleted_root_can_be_created_again(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER))
    given.txn(delete("root", "42", **ORDER))
    d = given.txn(insert("root", "42", **ORDER))
    assert published(d) == ["OrderPlaced"] and d.rejections == []


# ---------------------------------------------------------------------------- soft delete (the row left `where`)


def test_soft_delete_then_restore_brings_the_lines_back(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)))
    ev = only_event(given.txn(soft_delete("root", "42", **ORDER)))
    assert ev.event_type == "OrderDeleted" and [x["line_id"] for x in ev.data["lines"]] == [1, 2]
    assert given.state["exists"] is False and given.state["soft_deleted"] is True
    d = given.txn(insert("root", "42", **ORDER))   # deleted_at cleared: the row is back
    ev = only_event(d)
    assert ev.event_type == "OrderPlaced" and d.rejections == []
    assert ev.data == {**ORDER, "lines": [line(1), line(2)]}
    assert "soft_deleted" not in given.state and given.state["exists"] is True
    # the lines are known again: a later change is an event, not an update_of_unknown_child
    d = given.txn(update("lines", "42", "2", **line(2, quantity=5)))
    assert published(d) == ["OrderLineChanged"] and d.rejections == []


def test_lines_changed_while_their_order_is_soft_deleted_are_applied_silently(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), insert("lines", "42", "2", **line(2)))
    given.txn(soft_delete("root", "42", **ORDER))
    d = given.txn(update("lines", "42", "1", **line(1, quantity=9)), delete("lines", "42", "2", **line(2)),
                  insert("lines", "42", "3", **line(3)))
    assert published(d) == [] and d.rejections == []   # the order is deleted for consumers
    assert given.state["held"] == {}                    # nothing waits as an orphan
    ev = only_event(given.txn(insert("root", "42", **{**ORDER, "status": "paid"})))
    assert ev.event_type == "OrderPlaced"
    assert ev.data == {**ORDER, "status": "paid", "lines": [line(1, quantity=9), line(3)]}


def test_soft_delete_and_restore_in_one_transaction_carry_the_lines(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(soft_delete("root", "42", **ORDER), insert("root", "42", **ORDER))
    assert published(d) == ["OrderDeleted", "OrderPlaced"]
    assert d.events[-1].data["lines"] == [line(1)]


def test_a_hard_delete_still_drops_the_lines(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    given.txn(delete("root", "42", **ORDER))
    assert given.state["children"] == {} and "soft_deleted" not in given.state
    ev = only_event(given.txn(insert("root", "42", **ORDER)))
    assert ev.data == {**ORDER, "lines": []}


def test_delete_of_an_unknown_or_deleted_root_is_rejected(given: Given) -> None:
    d = given.txn(delete("root", "42", **ORDER))
    assert [r.reason for r in d.rejections] == ["delete_of_unknown_aggregate"]
    given.txn(insert("root", "42", **ORDER))
    given.txn(delete("root", "42", **ORDER))
    d = given.txn(delete("root", "42", **ORDER), update("root", "42", **ORDER))
    assert [r.reason for r in d.rejections] == ["delete_of_unknown_aggregate", "update_of_unknown_aggregate"]
    assert "deleted" in d.rejections[0].detail


def test_updates_before_a_delete_in_the_same_transaction_are_dropped(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(
        update("root", "42", **{**ORDER, "status": "cancelled"}),
        update("lines", "42", "1", **line(1, quantity=0)),
        delete("root", "42", **{**ORDER, "status": "cancelled"}),
    )
    ev = only_event(d)
    assert ev.event_type == "OrderDeleted"
    assert ev.data["status"] == "cancelled" and ev.data["lines"] == [line(1, quantity=0)]


def test_tombstone_flag_follows_the_mapping(orders_mapping: AggregateMapping, src: SourceScript) -> None:
    d = DeclarativeDecider(orders_mapping)
    assert d.tombstone_on_delete is False
    state, _ = decide_and_evolve(d, d.initial_state(), src.txn(insert("root", "1", **ORDER))[0])
    _, dec = decide_and_evolve(d, state, src.txn(delete("root", "1", **ORDER))[0])
    assert "tombstone" not in dec.events[0].meta
    d.tombstone_on_delete = True  # what `tombstone_on_delete: true` in the mapping sets
    _, dec = decide_and_evolve(d, state, src.txn(delete("root", "1", **ORDER))[0])
    assert dec.events[0].meta["tombstone"] is True


# ---------------------------------------------------------------------------- snapshot


def test_snapshot_of_a_new_root_emits_snapshotted_with_children(given: Given) -> None:
    given.txn(snapshot("lines", "42", "1", **line(1)))   # lines table read first: held
    ev = only_event(given.txn(snapshot("root", "42", **ORDER)))
    assert ev.event_type == "OrderSnapshotted"
    assert ev.data == {**ORDER, "lines": [line(1)]}


def test_snapshot_identical_to_the_state_emits_nothing(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(snapshot("root", "42", **ORDER), snapshot("lines", "42", "1", **line(1)))
    assert d.events == [] and d.rejections == []


def test_snapshot_that_differs_behaves_like_an_update(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)))
    d = given.txn(
        snapshot("root", "42", **{**ORDER, "status": "paid"}),
        snapshot("lines", "42", "1", **line(1, quantity=2)),
        snapshot("lines", "42", "2", **line(2)),
    )
    assert published(d) == ["OrderPaid", "OrderLineChanged", "OrderLineAdded"]


def test_snapshot_events_can_be_switched_off(orders_mapping: AggregateMapping, src: SourceScript) -> None:
    d = DeclarativeDecider(orders_mapping.model_copy(update={"emit_snapshot_events": False}))
    state, dec = decide_and_evolve(d, d.initial_state(), src.txn(snapshot("root", "42", **ORDER))[0])
    assert [e for e in dec.events if not e.internal] == []
    assert state["exists"] is True and state["root"] == ORDER


# ---------------------------------------------------------------------------- naming, validation, purity


def test_default_event_names(src: SourceScript) -> None:
    m = AggregateMapping.model_validate({
        "aggregate": "Invoice",
        "root": {"table": "billing.invoices", "id": "id"},
        "children": [
            {"name": "items", "table": "billing.invoice_items", "id": "id", "parent_key": "invoice_id"},
            {"name": "billing_addresses", "entity": "Address", "table": "billing.addresses", "id": "id",
             "parent_key": "invoice_id", "events": {"removed": "InvoiceAddressDropped"}},
        ],
    })
    d = DeclarativeDecider(m)
    assert (d.created, d.updated, d.deleted, d.snapshotted) == (
        "InvoiceCreated", "InvoiceUpdated", "InvoiceDeleted", "InvoiceSnapshotted",
    )
    assert (d.children["items"].added, d.children["items"].changed, d.children["items"].removed) == (
        "InvoiceItemAdded", "InvoiceItemChanged", "InvoiceItemRemoved",
    )
    addresses = d.children["billing_addresses"]
    assert (addresses.added, addresses.removed) == ("InvoiceAddressAdded", "InvoiceAddressDropped")


@pytest.mark.parametrize(
    "name,entity",
    [("lines", "Line"), ("order_items", "OrderItem"), ("categories", "Category"), ("addresses", "Address"),
     ("boxes", "Box"), ("glass", "Glass")],
)
def test_singular_pascal(name: str, entity: str) -> None:
    assert singular_pascal(name) == entity


def test_mapping_rules_that_shadow_payload_keys_are_refused(orders_mapping: AggregateMapping) -> None:
    raw = orders_mapping.model_dump(by_alias=True)
    raw["root"]["fields"]["status"] = {"name": "changes"}
    with pytest.raises(MappingRuleError, match="changes"):
        DeclarativeDecider(AggregateMapping.model_validate(raw))
    raw = orders_mapping.model_dump(by_alias=True)
    raw["children"][0]["enrich"] = ["nope"]
    with pytest.raises(MappingRuleError, match="enrich field 'nope'"):
        DeclarativeDecider(AggregateMapping.model_validate(raw))


def test_decide_and_evolve_do_not_mutate_their_input(given: Given) -> None:
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "1", **line(1)), insert("lines", "7", "5", **line(5)))
    frozen = copy.deepcopy(given.state)
    cmds, _ = given.src.txn(
        update("root", "42", **{**ORDER, "status": "paid"}),
        update("lines", "42", "1", **line(1, quantity=3)),
        delete("root", "42", **ORDER),
    )
    decide_and_evolve(given.decider, given.state, cmds)
    assert given.state == frozen


def test_state_is_json(given: Given) -> None:
    given.txn(insert("lines", "42", "1", **line(1)))
    given.txn(insert("root", "42", **ORDER), insert("lines", "42", "2", **line(2)))
    assert json.loads(json.dumps(given.state)) == given.state


# ---------------------------------------------------------------------------- property: grouping


def _random_rows(rnd: random.Random, n: int) -> list[Row]:
    rows: list[Row] = []
    for _ in range(n):
        op = rnd.choice(["insert", "insert", "update", "update", "delete", "snapshot"])
        statuses = ["pending", "paid", "shipped", "cancelled"]
        if rnd.random() < 0.4:
            fields = {**ORDER, "status": rnd.choice(statuses), "total": rnd.choice(["1.00", "2.00"])}
            rows.append(Row("root", op, "42", "42", fields, dict(fields) if op != "insert" else None))
        else:
            cid = rnd.choice(["1", "2", "3"])
            fields = line(int(cid), quantity=rnd.randint(1, 3))
            rows.append(Row("lines", op, "42", cid, fields, dict(fields) if op != "insert" else None))
    return rows


def _essence(state: dict[str, Any]) -> dict[str, Any]:
    held = {n: {i: e["fields"] for i, e in c.items()} for n, c in state["held"].items()}
    children = {n: c for n, c in state["children"].items() if c}
    return {"exists": state["exists"], "root": state["root"], "children": children, "held": held}


def _chunks(rnd: random.Random, rows: list[Row]) -> list[list[Row]]:
    out: list[list[Row]] = [[]]
    for r in rows:
        if out[-1] and rnd.random() < 0.4:
            out.append([])
        out[-1].append(r)
    return out


def test_state_does_not_depend_on_how_commands_are_grouped_into_transactions(orders_mapping: AggregateMapping) -> None:
    # Folding only changes which events announce a transaction, never the state it leads to,
    # nor which commands are refused.
    rnd = random.Random(20260101)
    d = DeclarativeDecider(orders_mapping)
    for _ in range(600):
        prefix = _random_rows(rnd, rnd.randint(0, 4))
        rows = _random_rows(rnd, rnd.randint(1, 9))
        results = []
        for grouping in ([[r] for r in rows], [rows], _chunks(rnd, rows)):
            script = SourceScript(orders_mapping)
            state = d.initial_state()
            for r in prefix:
                state, _ = decide_and_evolve(d, state, script.txn(r)[0])
            reasons, published_n = [], 0
            for chunk in grouping:
                state, dec = decide_and_evolve(d, state, script.txn(*chunk)[0])
                reasons += [x.reason for x in dec.rejections]
                published_n += len([e for e in dec.events if not e.internal])
            assert published_n <= len(rows)
            results.append((_essence(state), reasons))
        assert results[1] == results[0], (prefix, rows)
        assert results[2] == results[0], (prefix, rows)


def test_transitions_of_two_fields_matching_one_update_each_fire_in_the_order_written(orders_mapping) -> None:
    """Issue 16: a film whose rating and price change in one update is rerated AND repriced."""
    from cdc_bridge.aggregate.testing import SourceScript as Script

    doc = orders_mapping.model_dump(by_alias=True, exclude_none=True)
    doc["root"]["transitions"] = [
        {"field": "total", "from": "*", "to": "*", "event": "OrderRepriced"},
        {"field": "status", "from": "pending", "to": "paid", "event": "OrderPaid"},
        {"field": "status", "from": "*", "to": "paid", "event": "OrderPaidLate"},   # same field: first match only
    ]
    mapping = type(orders_mapping).model_validate(doc)
    g = Given(DeclarativeDecider(mapping), Script(mapping))
    g.txn(insert("root", "42", **ORDER))
    d = g.txn(update("root", "42", **{**ORDER, "status": "paid", "total": "31.00"}))
    assert published(d) == ["OrderRepriced", "OrderPaid"]
    assert all(set(e.data["changes"]) == {"status", "total"} for e in d.events)
    d = g.txn(update("root", "42", **{**ORDER, "status": "paid", "total": "32.00"}))
    assert published(d) == ["OrderRepriced"]
    d = g.txn(update("root", "42", **{**ORDER, "status": "shipped", "total": "32.00"}))
    assert published(d) == ["OrderUpdated"]


def test_a_large_aggregate_embeds_at_most_max_embedded_children_the_rest_follow(orders_mapping) -> None:
    """Issue 16: an invoice with 5,000 items must not become one event too large for Kafka."""
    from cdc_bridge.aggregate.testing import SourceScript as Script

    mapping = orders_mapping.model_copy(update={"max_embedded_children": 2})
    g = Given(DeclarativeDecider(mapping), Script(mapping))
    lines = [insert("lines", "42", str(n), line_id=n, sku=f"S{n}", quantity=1, unit_price="1.00") for n in range(1, 6)]
    d = g.txn(insert("root", "42", **ORDER), *lines)
    assert published(d) == ["OrderPlaced"] + ["OrderLineAdded"] * 3
    placed, *added = [e for e in d.events if not e.internal]
    assert [x["line_id"] for x in placed.data["lines"]] == [1, 2]
    assert [e.data["line_id"] for e in added] == [3, 4, 5]
    assert all(e.data["order"] == {"customer_id": ORDER["customer_id"], "status": ORDER["status"]} for e in added)
    assert len(g.state["children"]["lines"]) == 5            # the state holds every child

    d = g.txn(delete("root", "42", **ORDER))
    assert published(d) == ["OrderLineRemoved"] * 3 + ["OrderDeleted"]
    *removed, deleted = d.events
    assert [e.data["line_id"] for e in removed] == [3, 4, 5] and len(deleted.data["lines"]) == 2
    assert removed[0].data["order"]["status"] == ORDER["status"]
    assert g.state["exists"] is False
