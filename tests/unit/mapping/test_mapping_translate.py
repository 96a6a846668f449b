"""MappingSet.translate: row changes of a source transaction -> commands and dead letters."""

from __future__ import annotations

import pytest

from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.loader import load_mappings
from cdc_bridge.mapping.translate import (to_bool, to_date, to_datetime, to_decimal, to_float, to_int, to_json,
                                          to_str, values_equal)
from mapping_helpers import EXAMPLES, dele, ins, snap, txn, upd


@pytest.fixture(scope="module")
def ms():
    return load_mappings(EXAMPLES)


def order(**kw):
    row = {"id": 1, "customer_id": 7, "status": "pending", "total": "12.50", "currency": "EUR",
           "created_at": "2026-11-27T04:42:20.000001", "deleted_at": None, "note": "ring twice"}
    row.update(kw)
    return row


def line(**kw):
    row = {"id": 10, "order_id": 1, "sku": "SKU-1", "quantity": 2, "unit_price": "4.99"}
    row.update(kw)
    return row


def customer(**kw):
    row = {"tenant_id": 1, "customer_no": "C-1001", "name": "Ada", "email": "ada@example.com", "is_active": "Y",
           "credit_limit": "1500.00", "signup_ts": 1714550400, "preferences": '{"lang": "en"}',
           "password_hash": "secret"}
    row.update(kw)
    return row


def address(**kw):
    row = {"address_id": 5, "tenant_id": 1, "customer_no": "C-1001", "kind": "billing", "street": "1 Main St",
           "city": "Springfield", "zip": "12345", "country": "US", "removed": False}
    row.update(kw)
    return row


ORDER_FIELDS = {"order_id": 1, "customer_id": 7, "status": "pending", "total": "12.50", "currency": "EUR",
                "created_at": "2026-11-27T04:42:20.000001"}


# --------------------------------------------------------------------------- basics


def test_insert_root_and_child(ms):
    t = txn(ins("shop.orders", order()), ins("shop.order_lines", line()))
    cmds, dead = ms.translate(t)
    assert dead == []
    root, child = cmds
    assert isinstance(root, Command)
    assert dict(root) == {
        "command_type": "CreateOrder", "aggregate": "Order", "aggregate_id": "1", "entity": "root",
        "entity_id": "1", "operation": "insert", "payload": ORDER_FIELDS, "before": None, "table": "shop.orders",
        "position": t.position, "txn_id": "0-1-42", "commit_ts": 1_700_000_000.0, "index": 0, "soft": False}
    assert (child.command_type, child.aggregate_id, child.entity, child.entity_id, child.index) == (
        "AddOrderLine", "1", "lines", "10", 1)
    assert child.payload == {"line_id": 10, "sku": "SKU-1", "quantity": 2, "unit_price": "4.99"}


def test_update_carries_payload_and_before(ms):
    cmds, dead = ms.translate(txn(upd("shop.orders", order(), order(status="paid", total="13.00"))))
    assert dead == []
    [c] = cmds
    assert (c.command_type, c.operation) == ("UpdateOrder", "update")
    assert c.payload == {**ORDER_FIELDS, "status": "paid", "total": "13.00"}
    assert c.before == ORDER_FIELDS


def test_update_of_unmapped_columns_only_is_dropped(ms):
    cmds, dead = ms.translate(txn(upd("shop.orders", order(), order(note="leave at door"))))
    assert (cmds, dead) == ([], [])


def test_update_of_unmapped_columns_kept_when_asked():
    from cdc_bridge.mapping.loader import MappingSet

    kept = MappingSet(load_mappings(EXAMPLES).aggregates, drop_unchanged_updates=False)
    [c] = kept.translate(txn(upd("shop.orders", order(), order(note="x"))))[0]
    assert c.payload == c.before


def test_delete_payload_is_before(ms):
    [c] = ms.translate(txn(dele("shop.order_lines", line())))[0]
    assert (c.command_type, c.operation, c.aggregate_id, c.entity_id) == ("RemoveOrderLine", "delete", "1", "10")
    assert c.payload == c.before == {"line_id": 10, "sku": "SKU-1", "quantity": 2, "unit_price": "4.99"}


def test_snapshot(ms):
    [c] = ms.translate(txn(snap("shop.orders", order())))[0]
    assert (c.command_type, c.operation, c.before) == ("SnapshotOrder", "snapshot", None)


def test_unmapped_tables_are_ignored_and_index_is_the_row_ordinal(ms):
    t = txn(ins("shop.audit_log", {"id": 1}), ins("other.orders", order()), ins("shop.orders", order()))
    cmds, dead = ms.translate(t)
    assert dead == [] and [c.index for c in cmds] == [2]


def test_txn_id_without_gtid(ms):
    t = txn(ins("shop.orders", order()), gtid=None, pos=777)
    [c] = ms.translate(t)[0]
    assert c.txn_id == "mysql-bin.000003:777"


# --------------------------------------------------------------------------- keys


def test_composite_ids_and_renames_and_exclude(ms):
    t = txn(ins("shop.customers", customer()), ins("shop.customer_addresses", address()))
    (root, child), dead = ms.translate(t)
    assert dead == []
    assert (root.command_type, root.aggregate_id, root.entity_id) == ("RegisterCustomer", "1:C-1001", "1:C-1001")
    assert root.payload == {"tenant_id": 1, "customer_no": "C-1001", "name": "Ada", "email": "ada@example.com",
                            "active": True, "credit_limit": "1500.00", "signed_up_at": "2024-05-01T08:00:00Z",
                            "preferences": {"lang": "en"}}
    assert "password_hash" not in root.payload
    assert (child.command_type, child.aggregate_id, child.entity, child.entity_id) == (
        "AddCustomerAddress", "1:C-1001", "addresses", "5")
    assert child.payload == {"address_id": 5, "kind": "billing", "street": "1 Main St", "city": "Springfield",
                             "zip": "12345", "country": "US"}  # '*' minus exclude


@pytest.mark.parametrize("table,row,col", [
    ("shop.orders", order(id=None), "id"),
    ("shop.order_lines", line(order_id=None), "parent_key column order_id"),
    ("shop.order_lines", line(id=None), "id column id"),
    ("shop.customers", customer(customer_no=None), "customer_no"),
])
def test_null_key_is_a_dead_letter(ms, table, row, col):
    t = txn(ins(table, row), ins("shop.orders", order(id=2)))
    cmds, [d] = ms.translate(t)
    assert [c.aggregate_id for c in cmds] == ["2"]  # the rest goes on
    assert d.reason == "null_key" and col in d.detail and "NULL" in d.detail
    assert (d.table, d.record, d.position, d.txn_id) == (table, row, t.position, "0-1-42")


def test_child_moved_to_another_parent(ms):
    t = txn(upd("shop.order_lines", line(), line(order_id=2, quantity=3)))
    (out, into), dead = ms.translate(t)
    assert dead == []
    assert (out.command_type, out.operation, out.aggregate_id, out.entity_id) == ("RemoveOrderLine", "delete", "1", "10")
    assert out.payload == out.before == {"line_id": 10, "sku": "SKU-1", "quantity": 2, "unit_price": "4.99"}
    assert (into.command_type, into.operation, into.aggregate_id, into.before) == ("AddOrderLine", "insert", "2", None)
    assert into.payload["quantity"] == 3
    assert out.index == into.index == 0


def test_root_id_change_is_delete_then_create(ms):
    (a, b), _ = ms.translate(txn(upd("shop.orders", order(), order(id=99))))
    assert (a.command_type, a.aggregate_id, b.command_type, b.aggregate_id) == ("DeleteOrder", "1", "CreateOrder", "99")


# --------------------------------------------------------------------------- where


def test_soft_delete_is_a_delete_and_undelete_an_insert(ms):
    deleted = order(deleted_at="2026-11-28T00:00:00")
    [gone], _ = ms.translate(txn(upd("shop.orders", order(), deleted)))
    assert (gone.command_type, gone.operation, gone.payload, gone.before, gone.soft) == (
        "DeleteOrder", "delete", ORDER_FIELDS, ORDER_FIELDS, True)   # soft: the row is still there
    [back], _ = ms.translate(txn(upd("shop.orders", deleted, order())))
    assert (back.command_type, back.operation, back.payload, back.before, back.soft) == (
        "CreateOrder", "insert", ORDER_FIELDS, None, False)
    [hard], _ = ms.translate(txn(dele("shop.orders", order())))
    assert (hard.operation, hard.soft) == ("delete", False)


def test_rows_outside_the_filter_are_ignored(ms):
    deleted = order(deleted_at="2026-11-28T00:00:00")
    t = txn(ins("shop.orders", deleted), upd("shop.orders", deleted, {**deleted, "status": "paid"}),
            dele("shop.orders", deleted), snap("shop.orders", deleted))
    assert ms.translate(t) == ([], [])


def test_multi_tenant_filter_and_boolean_soft_delete(ms):
    t = txn(ins("shop.customers", customer(tenant_id=3)), ins("shop.customers", customer(tenant_id=2)),
            ins("shop.customer_addresses", address(tenant_id=3)),
            upd("shop.customer_addresses", address(), address(removed=True)),
            upd("shop.customer_addresses", address(address_id=6, removed=1), address(address_id=6, removed=0)))
    cmds, dead = ms.translate(t)
    assert dead == []
    assert [(c.command_type, c.aggregate_id, c.entity_id) for c in cmds] == [
        ("RegisterCustomer", "2:C-1001", "2:C-1001"),
        ("RemoveCustomerAddress", "1:C-1001", "5"),
        ("AddCustomerAddress", "1:C-1001", "6"),
    ]


@pytest.mark.parametrize("value,const,equal", [
    ("12.50", 12.5, True), (7, "7", True), (1, True, True), ("paid", "Paid", False), (None, 0, False),
    ("abc", 1, False), (0, False, True), ("1.0", "1", False),
])
def test_values_equal(value, const, equal):
    assert values_equal(value, const) is equal


def test_where_operators(mapdir):
    mapdir.write("t.yaml", """
        aggregate: Ticket
        root:
          table: app.tickets
          id: id
          fields: [id]
          where:
            state: {ne: closed, not_in: [spam, junk]}
            prio: {in: [1, 2]}
            owner: {is_null: false}
        """)
    ms = mapdir.load()
    rows = [
        {"id": 1, "state": "open", "prio": 1, "owner": "x"},      # in
        {"id": 2, "state": "closed", "prio": 1, "owner": "x"},    # ne
        {"id": 3, "state": "spam", "prio": 1, "owner": "x"},      # not_in
        {"id": 4, "state": "open", "prio": 3, "owner": "x"},      # in
        {"id": 5, "state": "open", "prio": "2", "owner": "x"},    # in, numeric string
        {"id": 6, "state": "open", "prio": 2, "owner": None},     # is_null: false
        {"id": 7, "state": None, "prio": 2, "owner": "y"},        # ne matches NULL
    ]
    cmds, _ = ms.translate(txn(*(ins("app.tickets", r) for r in rows)))
    assert [c.entity_id for c in cmds] == ["1", "5", "7"]


# --------------------------------------------------------------------------- coercion


def test_coercion_failure_dead_letters_the_row_and_the_rest_continues(ms):
    bad = line(id=11, quantity="two")
    t = txn(ins("shop.order_lines", line()), ins("shop.order_lines", bad), ins("shop.order_lines", line(id=12)))
    cmds, [d] = ms.translate(t)
    assert [c.entity_id for c in cmds] == ["10", "12"]
    assert d.reason == "coercion_failed"
    assert "shop.order_lines column quantity" in d.detail and "'two'" in d.detail and "to int" in d.detail
    assert (d.table, d.aggregate, d.aggregate_id, d.record, d.txn_id) == (
        "shop.order_lines", "Order", "1", bad, "0-1-42")
    assert d.position == t.position
    assert d.to_json_dict()["position"]["binlog_pos"] == 1234


def test_coercion_failure_in_before_image(ms):
    cmds, [d] = ms.translate(txn(upd("shop.order_lines", line(quantity="x"), line(quantity=3))))
    assert cmds == [] and d.reason == "coercion_failed"


def test_missing_column_is_a_dead_letter(ms):
    row = line()
    del row["sku"]
    cmds, [d] = ms.translate(txn(ins("shop.order_lines", row)))
    assert cmds == [] and d.reason == "missing_column" and "sku" in d.detail


def test_null_stays_null_for_every_type(ms):
    [c], _ = ms.translate(txn(ins("shop.customers", customer(is_active=None, credit_limit=None, signup_ts=None,
                                                             preferences=None))))
    assert [c.payload[k] for k in ("active", "credit_limit", "signed_up_at", "preferences")] == [None] * 4


def test_customer_coercion_failures(ms):
    cmds, dead = ms.translate(txn(ins("shop.customers", customer(is_active="maybe")),
                                  ins("shop.customers", customer(customer_no="C-2", preferences="{oops")),
                                  ins("shop.customers", customer(customer_no="C-3", credit_limit="lots"))))
    assert cmds == []
    assert [d.reason for d in dead] == ["coercion_failed"] * 3
    assert ["is_active" in dead[0].detail, "preferences" in dead[1].detail, "credit_limit" in dead[2].detail] == [True] * 3
    assert "to bool" in dead[0].detail and "to json" in dead[1].detail and "to decimal" in dead[2].detail


@pytest.mark.parametrize("fn,value,expected", [
    (to_int, 5, 5), (to_int, "42", 42), (to_int, "12.00", 12), (to_int, 3.0, 3), (to_int, True, 1),
    (to_float, 2, 2.0), (to_float, "2.5", 2.5), (to_float, "1e3", 1000.0),
    (to_decimal, "12.50", "12.50"), (to_decimal, 12, "12"), (to_decimal, 0.1, "0.1"), (to_decimal, "1E+2", "100"),
    (to_decimal, "-0.00", "0.00"), (to_decimal, " 007.5", "7.5"),
    (to_str, 5, "5"), (to_str, True, "true"), (to_str, {"a": [1]}, '{"a":[1]}'), (to_str, "x", "x"),
    (to_bool, "Y", True), (to_bool, "n", False), (to_bool, 1, True), (to_bool, "false", False), (to_bool, False, False),
    (to_datetime, "2024-05-01 08:00:00", "2024-05-01T08:00:00"),
    (to_datetime, "2024-05-01T08:00:00.250000", "2024-05-01T08:00:00.250000"),
    (to_datetime, "2024-05-01T10:00:00+02:00", "2024-05-01T08:00:00Z"),
    (to_datetime, "2024-05-01T08:00:00Z", "2024-05-01T08:00:00Z"),
    (to_datetime, 1714550400, "2024-05-01T08:00:00Z"), (to_datetime, "2024-05-01", "2024-05-01T00:00:00"),
    (to_datetime, "0000-00-00 00:00:00", None),
    (to_date, "2024-05-01", "2024-05-01"), (to_date, "2024-05-01T23:59:59", "2024-05-01"),
    (to_date, 1714550400, "2024-05-01"), (to_date, "0000-00-00", None),
    (to_json, '{"a": 1}', {"a": 1}), (to_json, "[1, 2]", [1, 2]), (to_json, {"a": 1}, {"a": 1}),
])
def test_coercers(fn, value, expected):
    assert fn(value) == expected


@pytest.mark.parametrize("fn,value", [
    (to_int, "12.5"), (to_int, "x"), (to_int, 2.5), (to_int, [1]),
    (to_float, "x"), (to_float, "nan"), (to_float, True),
    (to_decimal, "x"), (to_decimal, "Infinity"), (to_decimal, True),
    (to_bool, "maybe"), (to_bool, 2), (to_bool, 1.0),
    (to_datetime, "yesterday"), (to_datetime, True), (to_datetime, 10**13),
    (to_date, "2024-13-01"), (to_json, "{oops"), (to_json, "NaN"), (to_json, ""),
])
def test_coercers_refuse(fn, value):
    with pytest.raises(Exception):
        fn(value)


def test_commands_override_and_entity(mapdir):
    mapdir.write("o.yaml", """
        aggregate: Order
        root:
          table: shop.orders
          id: id
          commands: {insert: PlaceOrder, delete: PurgeOrder}
        children:
          - name: lines
            entity: Item
            table: shop.order_lines
            id: id
            parent_key: order_id
            commands: {update: AdjustItem}
        """)
    ms = mapdir.load()
    cmds, _ = ms.translate(txn(ins("shop.orders", order()), dele("shop.orders", order(id=2)),
                               upd("shop.order_lines", line(), line(quantity=5)), ins("shop.order_lines", line(id=11))))
    assert [c.command_type for c in cmds] == ["PlaceOrder", "PurgeOrder", "AdjustItem", "AddOrderItem"]
    assert cmds[0].payload == order()  # fields: '*' by default: every column as named


# --------------------------------------------------------------------------- across the reader process boundary


def test_commands_survive_the_wire_unchanged(ms):
    """command_to_wire / commands_from_wire (what the reader process sends, pickled) rebuild equal
    commands, with the transaction's position, txn_id and commit_ts, and a delete's payload still
    the same dict as its before."""
    import pickle

    from cdc_bridge.mapping.translate import command_to_wire, commands_from_wire

    t = txn(ins("shop.orders", order()), ins("shop.order_lines", line()),
            upd("shop.order_lines", line(), line(quantity=3)), upd("shop.order_lines", line(), line(order_id=2)),
            dele("shop.orders", order(id=9)), snap("shop.orders", order(id=4)))
    cmds, dead = ms.translate(t)
    assert dead == [] and len(cmds) == 7   # the re-parented line is a delete + an insert
    wire = pickle.loads(pickle.dumps([command_to_wire(c) for c in cmds], protocol=pickle.HIGHEST_PROTOCOL))
    back = commands_from_wire(wire, t.position, t.txn_id, t.commit_ts)
    assert back == cmds
    assert [c.model_dump() for c in back] == [c.model_dump() for c in cmds]
    assert all(isinstance(c, Command) for c in back)
    deletes = [c for c in back if c.operation == "delete"]
    assert deletes and all(c.before is c.payload for c in deletes)


def test_the_reader_process_rebuilds_an_equal_translator(ms):
    """What ProcessSource sends its child (the aggregates, pickled) translates exactly like the
    bridge's own MappingSet: both example mappings (filters, composite ids, '*' + exclude)."""
    import pickle

    from cdc_bridge.mapping.loader import MappingSet

    aggregates, drop_unchanged = pickle.loads(pickle.dumps((ms.aggregates, ms.drop_unchanged_updates)))
    child = MappingSet(aggregates, drop_unchanged_updates=drop_unchanged)
    t = txn(ins("shop.orders", order()), ins("shop.order_lines", line(quantity="x")),
            upd("shop.orders", order(), order(deleted_at="2026-11-27T05:00:00")),
            ins("shop.customers", customer()), ins("shop.customer_addresses", address()),
            upd("shop.customers", customer(), customer(name="Ada L.")), dele("shop.customer_addresses", address()))
    want_cmds, want_dead = ms.translate(t)
    got_cmds, got_dead = child.translate(t)
    assert got_cmds == want_cmds and len(want_cmds) >= 5
    assert [d.model_dump() for d in got_dead] == [d.model_dump() for d in want_dead] and want_dead


def test_an_optional_field_is_null_until_its_column_exists(tmp_path):
    """Issue 16: `optional: true` for a column added later (ALTER TABLE ... ADD COLUMN): a stable event shape."""
    text = (EXAMPLES / "orders.yaml").read_text().replace(
        "    created_at:\n", "    created_at:\n    loyalty_tier: {type: int, optional: true}\n")
    (tmp_path / "orders.yaml").write_text(text)
    ms = load_mappings(tmp_path)
    [before], dead = ms.translate(txn(ins("shop.orders", order())))
    assert dead == [] and before.payload == {**ORDER_FIELDS, "loyalty_tier": None}
    [after], dead = ms.translate(txn(ins("shop.orders", order(id=2, loyalty_tier="3"))))
    assert dead == [] and after.payload["loyalty_tier"] == 3
    # a column that is not optional still is a missing_column dead letter
    row = order(id=3)
    del row["currency"]
    cmds, [d] = ms.translate(txn(ins("shop.orders", row)))
    assert cmds == [] and d.reason == "missing_column"


def test_a_table_in_two_aggregates_each_with_its_own_where(tmp_path):
    """Issue 16: a payment belongs to its rental and to its customer; one without a rental only to the customer."""
    (tmp_path / "a_rental.yaml").write_text("""
aggregate: Rental
root: {table: rent.rental, id: rental_id, fields: [rental_id, customer_id]}
children:
  - name: payments
    table: rent.payment
    id: payment_id
    parent_key: rental_id
    fields: [payment_id, amount]
    where: {rental_id: {is_null: false}}
""")
    (tmp_path / "b_customer.yaml").write_text("""
aggregate: Customer
root: {table: rent.customer, id: customer_id, fields: [customer_id, name]}
children:
  - name: payments
    table: rent.payment
    id: payment_id
    parent_key: customer_id
    fields: [payment_id, amount, rental_id]
""")
    ms = load_mappings(tmp_path)
    pay = {"payment_id": 9, "customer_id": 3, "rental_id": 77, "amount": "2.99"}
    cmds, dead = ms.translate(txn(ins("rent.payment", pay), ins("rent.payment", {**pay, "payment_id": 10,
                                                                                   "rental_id": None})))
    assert dead == []
    assert [(c.aggregate, c.aggregate_id, c.entity_id, c.index) for c in cmds] == [
        ("Rental", "77", "9", 0), ("Customer", "3", "9", 0), ("Customer", "3", "10", 1)]
    # a snapshot chunk read for one aggregate is translated for that aggregate only
    chunk = txn(snap("rent.payment", pay))
    chunk.snapshot_of = "Customer"
    cmds, _ = ms.translate(chunk)
    assert [c.aggregate for c in cmds] == ["Customer"]
