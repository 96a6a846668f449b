"""load_mappings: the examples load; every kind of mistake is reported with file, line, key and what is allowed."""

from __future__ import annotations

import pytest

from cdc_bridge.mapping.errors import MappingError
from cdc_bridge.mapping.loader import MappingSet, load_mappings, semantic_problems
from cdc_bridge.mapping.schema import AggregateMapping, entity_from_collection
from mapping_helpers import EXAMPLES

ORDER = """
aggregate: Order
root:
  table: shop.orders
  id: id
  fields:
    id: order_id
    customer_id:
    status:
children:
  - name: lines
    table: shop.order_lines
    id: id
    parent_key: order_id
    fields: [id, sku]
"""


def _at(problem, file: str, line: int) -> None:
    """The message names the file and the line of the offending key."""
    assert problem.file.endswith(file), problem
    assert problem.line == line, problem
    assert f"{file}:{line}: " in str(problem), str(problem)


# --------------------------------------------------------------------------- the examples


def test_examples_load():
    ms = load_mappings(EXAMPLES)
    assert [a.aggregate for a in ms.aggregates] == ["Customer", "Order"]  # file-name order
    [(agg, tm, entity)] = ms.by_table["shop.order_lines"]
    assert (agg.aggregate, entity, tm.parent_key) == ("Order", "lines", ["order_id"])
    assert ms.by_table["shop.orders"][0][2] == "root"
    cols = ms.tables_and_columns()
    assert cols["shop.orders"] == {"id", "customer_id", "status", "total", "currency", "created_at", "deleted_at"}
    assert cols["shop.order_lines"] == {"id", "order_id", "sku", "quantity", "unit_price"}
    assert cols["shop.customer_addresses"] is None  # fields: '*'
    assert cols["shop.customers"] == {"tenant_id", "customer_no", "name", "email", "is_active", "credit_limit",
                                      "signup_ts", "preferences"}


def test_orders_example_names_and_defaults():
    order = load_mappings(EXAMPLES).aggregate("Order")
    assert order.events_topic == "shop.order.events"
    lines = order.child("lines")
    assert lines.entity_name == "Line"
    assert [order.command_type(order.root, op) for op in ("insert", "update", "delete", "snapshot")] == [
        "CreateOrder", "UpdateOrder", "DeleteOrder", "SnapshotOrder"]
    assert [order.command_type(lines, op) for op in ("insert", "update", "delete", "snapshot")] == [
        "AddOrderLine", "ChangeOrderLine", "RemoveOrderLine", "SnapshotOrderLine"]
    assert order.root_event_type("created") == "OrderPlaced"
    assert order.root_event_type("snapshotted") == "OrderSnapshotted"
    assert order.child_event_type(lines, "added") == "OrderLineAdded"
    assert [t.event for t in order.root.transitions] == ["OrderPaid", "OrderShipped", "OrderCancelled"]
    assert order.root.transitions[2].from_ == "*"


def test_customers_example():
    cust = load_mappings(EXAMPLES).aggregate("Customer")
    assert cust.root.id == ["tenant_id", "customer_no"]
    addresses = cust.child("addresses")
    assert addresses.entity_name == "Address"
    assert cust.command_type(cust.root, "insert") == "RegisterCustomer"
    assert cust.command_type(addresses, "update") == "ChangeCustomerAddress"
    assert cust.child_event_type(addresses, "removed") == "CustomerAddressRemoved"
    assert cust.root.where["tenant_id"].operators() == {"in": [1, 2]}
    assert addresses.where["removed"].operators() == {"eq": False}
    assert cust.root.transitions[0].from_ is True and cust.root.transitions[0].to is False


@pytest.mark.parametrize("name,entity", [("lines", "Line"), ("addresses", "Address"), ("categories", "Category"),
                                         ("order_lines", "OrderLine"), ("boxes", "Box"), ("status", "Status")])
def test_entity_from_collection(name, entity):
    assert entity_from_collection(name) == entity


def test_explicit_entity_name(mapdir):
    mapdir.write("o.yaml", ORDER.replace("  - name: lines\n", "  - name: lines\n    entity: Item\n"))
    order = mapdir.load().aggregates[0]
    assert order.command_type(order.children[0], "insert") == "AddOrderItem"


# --------------------------------------------------------------------------- format errors


def test_unknown_key_suggests_the_closest(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("  fields:\n    id: order_id", "  feilds:\n    id: order_id"))
    p = mapdir.error("root.feilds")
    _at(p, "orders.yaml", 5)
    assert "unknown key 'feilds'" in p.message
    assert "did you mean 'fields'?" in p.message
    assert "allowed here: table, id, fields, exclude, where, commands, lookups, events, transitions" in p.message


def test_unknown_top_level_key(mapdir):
    mapdir.write("orders.yaml", ORDER + "topik: orders\n")
    p = mapdir.error("topik")
    _at(p, "orders.yaml", 15)
    assert "did you mean 'topic'?" in p.message and "emit_snapshot_events" in p.message


def test_unknown_condition_operator(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  where:\n    status: {eq: paid, nin: [x]}\nchildren:"))
    p = mapdir.error("root.where.status.nin")
    _at(p, "orders.yaml", 10)
    assert "allowed here: eq, ne, in, not_in, is_null" in p.message


def test_unknown_command_operation(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  commands:\n    insrt: PlaceOrder\nchildren:"))
    p = mapdir.error("root.commands.insrt")
    _at(p, "orders.yaml", 10)
    assert "did you mean 'insert'?" in p.message and "insert, update, delete, snapshot" in p.message


def test_wrong_type_says_what_is_expected(mapdir):
    mapdir.write("orders.yaml", "schema_version: two" + ORDER.replace(
        "    parent_key: order_id\n", "    parent_key: order_id\n    enrich: customer_id\n"))
    errs = mapdir.errors()
    version = next(e for e in errs if e.key == "schema_version")
    _at(version, "orders.yaml", 1)  # ORDER starts with a newline: aggregate is on line 2
    assert "expected an integer, got the string 'two'" in version.message
    enrich = next(e for e in errs if e.key == "children[0].enrich")
    _at(enrich, "orders.yaml", 15)
    assert "expected a list" in enrich.message


def test_events_must_be_a_mapping(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  events: OrderPlaced\nchildren:"))
    p = mapdir.error("root.events")
    _at(p, "orders.yaml", 9)
    assert "expected a mapping with the keys created, updated, deleted, snapshotted" in p.message


def test_bad_table_name(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("table: shop.order_lines", "table: order_lines"))
    p = mapdir.error("children[0].table")
    _at(p, "orders.yaml", 11)
    assert "schema.table" in p.message and "'order_lines'" in p.message


def test_bad_literal_lists_the_choices(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    status:\n", "    status: {type: strng}\n"))
    p = mapdir.error("root.fields.status.type")  # exactly one: the union's '*' branch is not reported
    _at(p, "orders.yaml", 8)
    assert "'strng' is not allowed (did you mean 'str'?)" in p.message
    assert "allowed: auto, str, int, float, decimal, bool, datetime, date, json, wkt, geojson" in p.message


def test_fields_bad_shape(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    fields: [id, sku]", "    fields: all"))
    p = mapdir.error("children[0].fields")
    _at(p, "orders.yaml", 14)
    assert "'*'" in p.message and "list of columns" in p.message


def test_missing_required_key_points_at_the_parent(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    parent_key: order_id\n", ""))
    p = mapdir.error("children[0].parent_key")
    _at(p, "orders.yaml", 10)
    assert "required key 'parent_key' is missing" in p.message
    assert "required here: table, id, name, parent_key" in p.message


def test_missing_root(mapdir):
    mapdir.write("x.yaml", "aggregate: Order\n")
    p = mapdir.error("root")
    _at(p, "x.yaml", 1)


def test_exclude_needs_star(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  exclude: [note]\nchildren:"))
    p = mapdir.error("root.exclude")
    _at(p, "orders.yaml", 9)
    assert "fields: '*'" in p.message


def test_two_columns_same_field_name(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    status:\n", "    status: customer_id\n"))
    p = mapdir.error("root.fields")
    _at(p, "orders.yaml", 5)
    assert "customer_id and status are both carried as field 'customer_id'" in p.message


def test_bad_names(mapdir):
    text = ORDER.replace("aggregate: Order", "aggregate: order").replace("name: lines", "name: Lines")
    mapdir.write("orders.yaml", text + "topic: 'shop orders'\n")
    errs = {e.key: e for e in mapdir.errors()}
    _at(errs["aggregate"], "orders.yaml", 1)
    assert "PascalCase" in errs["aggregate"].message
    _at(errs["children[0].name"], "orders.yaml", 10)
    _at(errs["topic"], "orders.yaml", 15)


def test_yaml_syntax_error_has_the_line(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("  id: id\n", "  id: id\n   bad: indent\n", 1))
    [p] = mapdir.errors()
    _at(p, "orders.yaml", 5)
    assert p.message.startswith("YAML syntax error")


def test_yaml_duplicate_key(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    status:\n", "    status:\n    status: state\n"))
    p = mapdir.error("root.fields.status")
    _at(p, "orders.yaml", 9)
    assert "duplicate key 'status' (first on line 8)" in p.message


def test_yaml_dialect_keeps_strings(mapdir):
    """yes/no/on/off, dates and leading zeros are strings; only true/false are booleans."""
    mapdir.write("orders.yaml", ORDER.replace("children:", "  where:\n    status: [no, on, 2024-01-02, 007]\n"
                                                           "    customer_id: {ne: 10}\n    note: {ne: true}\n"
                                                           "children:"))
    where = mapdir.load().aggregates[0].root.where
    assert where["status"].operators() == {"in": ["no", "on", "2024-01-02", "007"]}
    assert where["customer_id"].operators() == {"ne": 10}
    assert where["note"].operators() == {"ne": True}


def test_empty_and_non_mapping_files(mapdir):
    mapdir.write("a.yaml", "")
    mapdir.write("b.yml", "- aggregate: Order\n")
    errs = mapdir.errors()
    assert [(e.file.rsplit("/", 1)[-1], e.line) for e in errs] == [("a.yaml", 1), ("b.yml", 1)]
    assert "empty" in errs[0].message and "got a list" in errs[1].message


# --------------------------------------------------------------------------- rules across keys


def test_bad_transition_field(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  transitions:\n"
                                              "    - {field: status, from: pending, to: paid, event: OrderPaid}\n"
                                              "    - {field: stauts, from: paid, to: shipped, event: OrderShipped}\n"
                                              "children:"))
    p = mapdir.error("root.transitions[1].field")
    _at(p, "orders.yaml", 11)
    assert "'stauts' is not a field of the root (did you mean 'status'?)" in p.message
    assert "root fields: order_id, customer_id, status" in p.message


def test_transition_on_renamed_column_names_the_field(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("children:", "  transitions:\n"
                                              "    - {field: id, from: 1, to: 2, event: X}\nchildren:"))
    p = mapdir.error("root.transitions[0].field")
    _at(p, "orders.yaml", 10)
    assert "column id is carried as 'order_id'" in p.message


def test_bad_enrich(mapdir):
    mapdir.write("orders.yaml", ORDER + "    enrich:\n      - customer_id\n      - customer\n")
    p = mapdir.error("children[0].enrich[1]")
    _at(p, "orders.yaml", 17)
    assert "enrich field 'customer' is not a field of the root (did you mean 'customer_id'?)" in p.message


def test_enrich_with_star_root_rejects_excluded(mapdir):
    text = ORDER.replace("  fields:\n    id: order_id\n    customer_id:\n    status:\n", "  exclude: [note]\n")
    mapdir.write("orders.yaml", text + "    enrich: [note, anything]\n")
    p = mapdir.error("children[0].enrich[0]")
    _at(p, "orders.yaml", 12)
    assert "excluded" in p.message


def test_parent_key_arity(mapdir):
    text = ORDER.replace("  id: id\n  fields:", "  id: [id, tenant_id]\n  fields:", 1)
    mapdir.write("orders.yaml", text.replace("    status:\n", "    status:\n    tenant_id:\n"))
    p = mapdir.error("children[0].parent_key")
    _at(p, "orders.yaml", 14)
    assert "has 1 column(s) (order_id) but root.id has 2 (id, tenant_id)" in p.message


def test_duplicate_child_name_and_command_clash(mapdir):
    mapdir.write("orders.yaml", ORDER + """
  - name: lines
    table: shop.order_lines_archive
    id: id
    parent_key: order_id
    commands: {insert: CreateOrder}
""".lstrip("\n"))
    errs = {e.key: e for e in mapdir.errors()}
    _at(errs["children[1].name"], "orders.yaml", 15)
    assert "already used by children[0]" in errs["children[1].name"].message
    _at(errs["children[1].commands.insert"], "orders.yaml", 19)
    assert "'CreateOrder'" in errs["children[1].commands.insert"].message


def test_decider_path_format(mapdir):
    mapdir.write("orders.yaml", ORDER + "decider: shop.deciders.OrderDecider\n")
    p = mapdir.error("decider")
    _at(p, "orders.yaml", 15)
    assert "package.module:ClassName" in p.message


def test_decider_not_importable(mapdir):
    mapdir.write("orders.yaml", ORDER + "decider: no_such_pkg.deciders:OrderDecider\n")
    p = mapdir.error("decider")
    _at(p, "orders.yaml", 15)
    assert "cannot import module 'no_such_pkg.deciders'" in p.message and "ModuleNotFoundError" in p.message


def test_decider_missing_attribute_and_not_a_class(mapdir):
    mapdir.write("a.yaml", ORDER + "decider: collections:OrderedDic\n")
    mapdir.write("b.yaml", ORDER.replace("Order", "Invoice").replace("shop.", "billing.")
                 + "decider: os.path:join\n")
    a, b = mapdir.errors()
    _at(a, "a.yaml", 15)
    assert "no attribute 'OrderedDic' (did you mean 'OrderedDict'?)" in a.message
    _at(b, "b.yaml", 15)
    assert "not a class" in b.message


def test_decider_ok(mapdir):
    mapdir.write("orders.yaml", ORDER + "decider: collections:OrderedDict\n")
    assert mapdir.load().aggregates[0].decider == "collections:OrderedDict"


# --------------------------------------------------------------------------- across files


def test_a_table_in_several_aggregates_is_allowed_once_per_aggregate(mapdir):
    """Issue 16: order lines are children of Order and the root of ArchivedLine; columns are united."""
    mapdir.write("a_orders.yaml", ORDER)
    mapdir.write("b_archive.yaml", """
        aggregate: ArchivedLine
        root:
          table: shop.order_lines
          id: id
          fields: [id, quantity]
        """)
    ms = mapdir.load()
    assert [(a.aggregate, e) for a, _, e in ms.by_table["shop.order_lines"]] == [("Order", "lines"), ("ArchivedLine", "root")]
    assert ms.tables_and_columns()["shop.order_lines"] == {"id", "order_id", "sku", "quantity"}
    mapdir.write("c_twice.yaml", """
        aggregate: Twice
        root:
          table: shop.things
          id: id
        children:
          - name: parts
            table: shop.things
            id: id
            parent_key: id
        """)
    p = mapdir.error("children[0].table")
    _at(p, "c_twice.yaml", 7)
    assert "already mapped in this aggregate" in p.message


def test_same_aggregate_and_topic(mapdir):
    mapdir.write("a.yaml", ORDER + "topic: shop.events\n")
    mapdir.write("b.yaml", """
        aggregate: Order
        topic: shop.events
        root: {table: shop.other, id: id}
        """)
    errs = {e.key: e for e in mapdir.errors()}
    _at(errs["aggregate"], "b.yaml", 1)
    assert "already defined at" in errs["aggregate"].message and "a.yaml:1" in errs["aggregate"].message
    _at(errs["topic"], "b.yaml", 2)
    assert "'shop.events' is already the topic of aggregate Order" in errs["topic"].message


def test_default_topic_clash_points_at_aggregate(mapdir):
    mapdir.write("a.yaml", ORDER)
    mapdir.write("b.yaml", "aggregate: Invoice\ntopic: events.order\nroot: {table: shop.invoices, id: id}\n")
    p = mapdir.error("topic")
    _at(p, "b.yaml", 2)
    assert "a.yaml:1" in p.message


def test_all_errors_of_all_files_in_one_report(mapdir):
    mapdir.write("a.yaml", ORDER.replace("table: shop.orders", "table: orders"))
    mapdir.write("b.yaml", "aggregate: Invoice\nroot: {table: shop.invoices, id: id, feilds: '*'}\n")
    mapdir.write("c.yaml", "aggregate: [\n")
    with pytest.raises(MappingError) as exc:
        load_mappings(mapdir.path)
    err = exc.value
    assert err.exit_code == 1
    assert len(err.errors) == 3
    text = str(err)
    assert text.splitlines()[0] == f"3 problems in mappings {mapdir.path}:"
    assert "a.yaml:3: root.table:" in text
    assert "b.yaml:2: root.feilds: unknown key 'feilds'" in text
    assert "c.yaml:2: YAML syntax error" in text


def test_empty_directory(mapdir):
    mapdir.write("README.txt", "not a mapping")
    [p] = mapdir.errors()
    assert p.file == str(mapdir.path) and "no mapping files" in p.message
    assert str(mapdir.path) in str(MappingError([p]))


def test_missing_directory(tmp_path):
    with pytest.raises(MappingError) as exc:
        load_mappings(tmp_path / "nope")
    assert "does not exist" in str(exc.value) and str(tmp_path / "nope") in str(exc.value)


def test_dotfiles_are_skipped(mapdir):
    mapdir.write("orders.yaml", ORDER)
    mapdir.write(".#orders.yaml", "garbage: [")
    assert [a.aggregate for a in mapdir.load().aggregates] == ["Order"]


# --------------------------------------------------------------------------- programmatic use


def test_mappingset_from_models_and_semantic_problems():
    agg = AggregateMapping.model_validate({
        "aggregate": "Order", "root": {"table": "shop.orders", "id": "id", "fields": ["id", "status"],
                                       "transitions": [{"field": "state", "from": "a", "to": "b", "event": "X"}]}})
    assert [loc for loc, _ in semantic_problems(agg)] == [("root", "transitions", 0, "field")]
    ms = MappingSet([agg])
    assert ms.tables_and_columns() == {"shop.orders": {"id", "status"}}
    assert ms.locate("Order", ("root",)) == (None, None)


# --------------------------------------------------------------------------- first-hour messages (issue 17)


def test_a_misspelt_field_is_reported_once_at_the_field_not_at_every_reference(mapdir):
    mapdir.write("orders.yaml", ORDER.replace("    status:\n", "    statuss:\n").replace("children:", (
        "  transitions:\n"
        "    - {field: status, from: pending, to: paid, event: OrderPaid}\n"
        "    - {field: status, from: paid, to: shipped, event: OrderShipped}\n"
        "children:")).replace("    fields: [id, sku]\n", "    fields: [id, sku]\n    enrich: [status]\n"))
    errs = mapdir.errors()
    assert len(errs) == 1, "\n".join(map(str, errs))
    p = errs[0]
    _at(p, "orders.yaml", 8)
    assert p.key == "root.fields.statuss"
    assert "field 'statuss' looks like a typo of 'status'" in p.message
    assert "root.transitions[0].field, root.transitions[1].field, children[0].enrich[0]" in p.message
    assert "did you mean 'statuss'" not in p.message


def test_a_tab_in_the_indentation_says_to_indent_with_spaces(mapdir):
    mapdir.write("orders.yaml", "aggregate: Order\nroot:\n\ttable: shop.orders\n")
    [p] = mapdir.errors()
    _at(p, "orders.yaml", 3)
    assert "indent with spaces, not tabs" in p.message


def test_a_key_indented_too_far_gets_an_indentation_hint(mapdir):
    mapdir.write("orders.yaml", "aggregate: Order\nroot:\n  table: shop.orders\n    id: id\n")
    [p] = mapdir.errors()
    _at(p, "orders.yaml", 4)
    assert "indented deeper than the key above" in p.message


def test_lookups_load_and_their_mistakes_are_reported(mapdir):
    """Issue 16: lookups name a field of the table and hops through reference tables."""
    good = ORDER.replace("    status:\n", "    status:\n  lookups:\n    customer_name:\n      from: customer_id\n"
                                          "      via: [{table: crm.customers, key: id, take: name}]\n")
    mapdir.write("orders.yaml", good)
    ms = mapdir.load()
    assert ms.references["crm.customers"].columns == {"id", "name"}
    assert ms.tables_and_columns()["crm.customers"] == {"id", "name"}
    assert [a.aggregate for a in ms.snapshot_aggregates()] == ["LookupCrmCustomers", "Order"]
    mapdir.write("orders.yaml", good.replace("from: customer_id", "from: customerid"))
    p = mapdir.error("root.lookups.customer_name.from")
    assert "from 'customerid' is not a field of shop.orders (did you mean 'customer_id'?)" in p.message
