"""The initial-snapshot reader against the real MariaDB.

* values: every column type read by the snapshot equals what the binlog decoder produces
  for the same row (the snapshot and streaming must never disagree on a value);
* chunks: roots in id order with their children, orphans last; cursors resume, also with
  a new reader;
* position: rows committed after open() are not in the snapshot, and the binlog from the
  returned position holds exactly them.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from pathlib import Path
from typing import Callable

import pymysql
import pytest

from cdc_bridge.mapping.loader import load_mappings
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.source import BinlogSource, RowChange, SourcePosition, SourceSettings, SourceTransaction
from cdc_bridge.source.preflight import current_position
from cdc_bridge.source.snapshot import SnapshotChunk, SnapshotProgress, SnapshotReader
from devenv.monolith import create_schema

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

TYPES_DDL = """
CREATE TABLE `{db}`.`all_types` (
  id     INT PRIMARY KEY,
  ti     TINYINT, tiu TINYINT UNSIGNED, b TINYINT(1), bu TINYINT(1) UNSIGNED,
  si     SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i      INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dec_a  DECIMAL(20,6), dec_b DECIMAL(10,0), dec_c DECIMAL(65,30), dec_d DECIMAL(5,2) UNSIGNED,
  f      FLOAT, f2 FLOAT, d DOUBLE, d2 DOUBLE,
  dt     DATETIME, dt3 DATETIME(3), dt6 DATETIME(6), ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL,
  dd     DATE, tm TIME, tm1 TIME(1), tm6 TIME(6), y YEAR,
  c      CHAR(5), vc VARCHAR(300), tx TEXT, lt LONGTEXT, lat VARCHAR(20) CHARACTER SET latin1,
  latc   CHAR(4) CHARACTER SET latin1, vc_json VARCHAR(100) CHECK (json_valid(vc_json)),
  bn     BINARY(4), vb VARBINARY(8), bl BLOB,
  j      JSON, e ENUM('pending','paid','shipped'), st SET('a','b','c'),
  bt     BIT(10), bt64 BIT(64), bt1 BIT(1),
  u      UUID, ip6 INET6, ip4 INET4, g GEOMETRY, p POINT,
  gv     INT AS (i % 7) VIRTUAL, gs VARCHAR(12) AS (CONCAT('x', id)) PERSISTENT, hid INT INVISIBLE DEFAULT 5
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

NESTED_JSON = '{"a": {"b": [1, 2.5, "x", true, null]}, "\u00fc": "\U0001F600", "n": 12345678901234567890}'
BIG_DEC65 = "12345678901234567890123456789012345.123456789012345678901234567890"

# SQL literals per column; written with session time_zone '+05:30' (TIMESTAMPs are stored in UTC)
ROWS = [
    {"id": "1", "ti": "127", "tiu": "255", "b": "1", "bu": "2", "si": "32767", "siu": "65535", "mi": "8388607",
     "miu": "16777215", "i": "2147483647", "iu": "4294967295", "bi": "9223372036854775807",
     "biu": "18446744073709551615", "dec_a": "12345678901234.123456", "dec_b": "9999999999", "dec_c": BIG_DEC65,
     "dec_d": "999.99", "f": "1.1", "f2": "0.1234567", "d": "3.141592653589793", "d2": "0.1e0 + 0.2e0",
     "dt": "'9999-12-31 23:59:59'", "dt3": "'2024-02-29 13:14:15.5'", "dt6": "'2024-02-29 13:14:15.123456'",
     "ts": "'2024-01-01 10:00:00.123456'", "ts0": "'2024-06-30 23:59:59'", "ts2": "'2024-03-31 02:30:00.07'",
     "dd": "'2024-02-29'", "tm": "'838:59:59'", "tm1": "'-12:34:56.7'", "tm6": "'123:45:06.000007'", "y": "2155",
     "c": "'ab'", "vc": "'h\u00e9llo \U0001F600 " + "x" * 200 + "'", "tx": "'\U0001F680 rocket \u00e0 la carte'",
     "lt": "REPEAT('\u00df', 70000)", "lat": "'caf\u00e9 \u20ac'", "latc": "'\u00e9\u00e8'",
     "vc_json": """'{"k": [1, 2]}'""", "bn": "x'0102'", "vb": "x'00ff'", "bl": "x'00ff10fe80'",
     "j": f"'{NESTED_JSON}'", "e": "'paid'", "st": "'c,a'", "bt": "b'1000000001'", "bt64": "b'" + "1" * 64 + "'",
     "bt1": "b'1'", "u": "'f81d4fae-7dec-11d0-a765-00a0c91e6bf6'", "ip6": "'2001:db8::ff00:42:8329'",
     "ip4": "'10.0.0.1'", "g": "ST_GeomFromText('LINESTRING(0 0, 1 1, 2 5)')", "p": "POINT(1, 2)"},
    {"id": "2", "ti": "-128", "tiu": "0", "b": "0", "bu": "0", "si": "-32768", "siu": "0", "mi": "-8388608",
     "miu": "0", "i": "-2147483648", "iu": "0", "bi": "-9223372036854775808", "biu": "0",
     "dec_a": "-99999999999999.999999", "dec_b": "-42", "dec_c": "-0.000000000000000000000000000001",
     "dec_d": "0", "f": "-0.5", "f2": "3.4028234e38", "d": "-2.5e-300", "d2": "1e0 / 3e0",
     "dt": "'1000-01-01 00:00:00'", "dt3": "'2024-01-01 00:00:00'", "dt6": "'2024-01-01 00:00:00'",
     "ts": "'1970-01-01 05:30:01'", "ts0": "'2038-01-19 08:44:07'", "ts2": "'2024-01-01 00:00:00'",
     "dd": "'1000-01-01'", "tm": "'-838:59:59'", "tm1": "'-00:00:00.5'", "tm6": "'-00:00:00.000001'",
     "y": "1901", "c": "''", "vc": "''", "tx": "''", "lt": "'[]'", "lat": "''", "latc": "''",
     "vc_json": "'[]'", "bn": "x'00000000'", "vb": "x''", "bl": "x''", "j": "'[]'", "e": "'pending'",
     "st": "''", "bt": "b'0'", "bt64": "b'0'", "bt1": "b'0'", "u": "'00000000-0000-0000-0000-000000000000'",
     "ip6": "'::ffff:1.2.3.4'", "ip4": "'0.0.0.0'", "g": "ST_GeomFromText('POINT(-1.5 2e10)')",
     "p": "POINT(0, 0)"},
    {"id": "3", "f": "16777217", "f2": "1e-45", "d": "1.7976931348623157e308", "d2": "5e-324",
     "dec_a": "0.5", "tm": "'00:00:00'", "tm6": "'00:00:00'", "j": "'\"just a string\"'",
     "u": "'550e8400-e29b-41d4-a716-446655440000'", "ip6": "'::1'", "e": "'shipped'", "st": "'a,b,c'",
     "c": "'ab   '", "latc": "'x  '", "vc": "'trailing  '"},
]


def source_settings(mysql_settings: dict) -> SourceSettings:
    return SourceSettings(host=mysql_settings["host"], port=mysql_settings["port"], user=mysql_settings["user"],
                          password=mysql_settings["password"], server_id=random.randint(1000, 60000),
                          heartbeat_seconds=0.5, read_timeout_seconds=5, reconnect_initial_backoff=0.2)


def connect(mysql_settings: dict, db: str) -> pymysql.connections.Connection:
    return pymysql.connect(**mysql_settings, database=db, autocommit=True, charset="utf8mb4")


def collect_binlog(settings: SourceSettings, tables: dict, start: SourcePosition,
                   until: Callable[[list[SourceTransaction]], bool], timeout: float = 20.0) -> list[SourceTransaction]:
    """Transactions with changes from `start` until until(transactions) is true."""
    source = BinlogSource(settings, tables, start=start)
    txns: list[SourceTransaction] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            for txn in source.transactions():
                if txn is not None and txn.changes:
                    txns.append(txn)
                    if until(txns):
                        source.stop()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            error.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    source.stop()
    thread.join(10)
    if error:
        raise error[0]
    assert not thread.is_alive(), "BinlogSource did not stop"
    assert until(txns), f"the binlog did not deliver what was expected within {timeout}s: {txns}"
    return txns


def one_table_mapping(table: str, id_cols, fields="*") -> AggregateMapping:
    return AggregateMapping.model_validate({"aggregate": "Thing", "root": {"table": table, "id": id_cols,
                                                                         "fields": fields}})


def read_all(reader: SnapshotReader, after=None) -> list[SnapshotChunk]:
    return list(reader.chunks(after))


def changes_of(chunks: list[SnapshotChunk]) -> list[tuple]:
    return [(c.table, c.op, c.before, c.after, c.zero_dates) for ch in chunks for c in ch.changes]


# ---------------------------------------------------------------- values


@pytest.fixture
def typed_rows(mysql_settings, admin_db, fresh_db):
    """all_types with 3 full rows, an all-NULL row and a zero-date row; the binlog's inserts by id."""
    with admin_db.cursor() as cur:
        cur.execute(TYPES_DDL.format(db=fresh_db))
        start = current_position(admin_db)
    conn = connect(mysql_settings, fresh_db)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+05:30'")
        for row in ROWS:
            cur.execute(f"INSERT INTO all_types ({', '.join(row)}) VALUES ({', '.join(row.values())})")
        cur.execute("INSERT INTO all_types (id) VALUES (4)")
        cur.execute("SET sql_mode = ''")  # zero dates
        cur.execute("INSERT INTO all_types (id, dt, dt3, dt6, ts0, ts2, dd, y, e) VALUES (5, '2024-00-10 10:00:00', "
                    "'0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', "
                    "'0000-00-00', 0, 'bogus')")  # an invalid ENUM value: index 0
    conn.close()
    table = f"{fresh_db}.all_types"
    txns = collect_binlog(source_settings(mysql_settings), {table: None}, start,
                          lambda ts: sum(len(t.changes) for t in ts) >= 5)
    binlog = {c.after["id"]: c for t in txns for c in t.changes}
    assert sorted(binlog) == [1, 2, 3, 4, 5]
    return table, binlog


def test_snapshot_values_equal_the_binlog_decoders(mysql_settings, typed_rows):
    table, binlog = typed_rows
    reader = SnapshotReader(source_settings(mysql_settings), [one_table_mapping(table, "id")], chunk_size=2)
    reader.open()
    try:
        snap = [c for ch in reader.chunks() for c in ch.changes]
    finally:
        reader.close()
    assert [c.after["id"] for c in snap] == [1, 2, 3, 4, 5]
    for change in snap:
        want = binlog[change.after["id"]]
        assert change.op == "snapshot" and change.before is None and change.table == table
        assert list(change.after) == list(want.after)  # same columns, in table order
        diff = {k: (v, want.after[k]) for k, v in change.after.items()
                if v != want.after[k] or type(v) is not type(want.after[k])}
        assert not diff, f"row {change.after['id']}: snapshot vs binlog {diff}"
        assert change.zero_dates == want.zero_dates
    # not vacuous: spot checks of the rules both paths follow (docs/types.md)
    one = snap[0].after
    assert (one["f"], one["f2"], one["ts"], one["dt3"], one["b"], one["bu"]) == (
        1.1, 0.1234567, "2024-01-01T04:30:00.123456Z", "2024-02-29T13:14:15.500000", True, True)
    assert (one["st"], one["bn"], one["vc_json"], one["latc"]) == (
        ["a", "c"], base64.b64encode(b"\x01\x02\x00\x00").decode(), '{"k": [1, 2]}', "\u00e9\u00e8")
    assert snap[4].zero_dates == ["dt", "dt3", "dt6", "ts0", "ts2", "dd"] and snap[4].after["e"] == ""
    assert snap[4].after["y"] == 0          # YEAR 0000 is a value (issue 16)
    assert (snap[2].after["c"], snap[2].after["vc"]) == ("ab", "trailing  ")  # CHAR drops trailing spaces
    assert (one["gv"], one["gs"], one["hid"]) == (2147483647 % 7, "x1", 5)  # generated and invisible columns


def test_mapped_columns_only(mysql_settings, typed_rows):
    table, binlog = typed_rows
    fields = ["dec_a", "ts", "st", "bn", "f", "u"]
    reader = SnapshotReader(source_settings(mysql_settings), [one_table_mapping(table, "id", fields)])
    reader.open()
    try:
        snap = [c for ch in reader.chunks() for c in ch.changes]
    finally:
        reader.close()
    keep = {"id", *fields}
    for change in snap:
        want = {k: v for k, v in binlog[change.after["id"]].after.items() if k in keep}  # what the decoder keeps
        assert change.after == want and list(change.after) == list(want)


# ---------------------------------------------------------------- chunks, orphans, cursors


@pytest.fixture
def shop(mysql_settings, admin_db, fresh_db):
    """The example schema with 3 orders (one soft-deleted) + lines + an orphan line, and customers
    with a composite key + addresses (one orphan); the mappings of mappings/ pointed at it."""
    create_schema(admin_db, fresh_db)
    conn = connect(mysql_settings, fresh_db)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO orders (id, customer_id, status, total, currency, created_at, deleted_at) VALUES "
                    "(1, 7, 'paid', 12.5, 'EUR', '2024-01-01 10:00:00.5', NULL), "
                    "(2, 8, 'pending', 3, 'USD', '2024-01-02 00:00:00', '2024-02-01 00:00:00'), "
                    "(3, 9, 'shipped', 0, 'EUR', '2024-01-03 00:00:00', NULL)")
        cur.execute("INSERT INTO order_lines VALUES (10, 3, 'A', 1, 1.5), (11, 1, 'B', 2, 2), (12, 2, 'C', 3, 3), "
                    "(13, 999, 'ORPHAN', 1, 9.99), (14, 1, 'D', 1, 0.01), (15, 3, 'E', 4, 100)")
        cur.execute("INSERT INTO customers (tenant_id, customer_no, name, signup_ts, preferences) VALUES "
                    "(1, 'C-2', 'Bob', 2, NULL), (1, 'C-10', 'Ann', 1, '{}'), (2, 'C-1', 'Cy', 3, NULL)")
        cur.execute("INSERT INTO customer_addresses (address_id, tenant_id, customer_no, kind, street, city, zip, "
                    "country) VALUES (1, 2, 'C-1', 'billing', 's', 'c', 'z', 'DE'), "
                    "(2, 1, 'C-10', 'shipping', 's', 'c', 'z', 'FR'), (3, 3, 'X', 'billing', 's', 'c', 'z', 'IT'), "
                    "(4, 1, 'C-10', 'billing', 's', 'c', 'z', 'FR')")
    conn.close()
    return fresh_db, shop_mappings(fresh_db)


def shop_mappings(db: str) -> list[AggregateMapping]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("orders.yaml", "customers.yaml"):
            (Path(tmp) / name).write_text((MAPPINGS / name).read_text().replace("shop.", f"{db}."))
        mappings = load_mappings(tmp)
    by_name = {a.aggregate: a for a in mappings.aggregates}
    return [by_name["Order"], by_name["Customer"]]


def summary(chunks: list[SnapshotChunk]) -> list[tuple]:
    """(aggregate, [(table suffix, id...)], cursor) per chunk."""
    out = []
    for ch in chunks:
        rows = []
        for c in ch.changes:
            name = c.table.split(".")[1]
            if name == "orders":
                rows.append(("orders", c.after["id"]))
            elif name == "order_lines":
                rows.append(("lines", c.after["id"]))
            elif name == "customers":
                rows.append(("customers", c.after["tenant_id"], c.after["customer_no"]))
            else:
                rows.append(("addresses", c.after["address_id"]))
        out.append((ch.aggregate, rows, ch.cursor))
        assert ch.rows == len(ch.changes)
    return out


def test_chunks_roots_then_children_orphans_last(mysql_settings, shop):
    db, aggregates = shop
    with SnapshotReader(source_settings(mysql_settings), aggregates, chunk_size=2) as reader:
        reader.open()
        chunks = read_all(reader)
    assert summary(chunks) == [
        ("Order", [("orders", 1), ("orders", 2), ("lines", 11), ("lines", 12), ("lines", 14)],
         {"aggregate": "Order", "after": [2]}),
        ("Order", [("orders", 3), ("lines", 10), ("lines", 15)],
         {"aggregate": "Order", "child": "lines", "orphans_after": None}),
        ("Order", [("lines", 13)], {"aggregate": "Customer", "after": None}),
        # composite key, in (tenant_id, customer_no) order: the column's collation, 'C-10' < 'C-2'
        ("Customer", [("customers", 1, "C-10"), ("customers", 1, "C-2"), ("addresses", 2), ("addresses", 4)],
         {"aggregate": "Customer", "after": [1, "C-2"]}),
        ("Customer", [("customers", 2, "C-1"), ("addresses", 1)],
         {"aggregate": "Customer", "child": "addresses", "orphans_after": None}),
        ("Customer", [("addresses", 3)], {"done": True}),
    ]
    assert [ch.orphans for ch in chunks] == [False, False, True, False, False, True]
    order2 = chunks[0].changes[1]
    # no SQL filter: the soft-deleted order is read; the translator's `where` drops it
    assert order2.after == {"id": 2, "customer_id": 8, "status": "pending", "total": "3.00", "currency": "USD",
                            "created_at": "2024-01-02T00:00:00.000000", "deleted_at": "2024-02-01T00:00:00"}
    assert all(c.op == "snapshot" and c.before is None for ch in chunks for c in ch.changes)
    # fields '*' minus nothing at the source: exclude is applied by the translator, as for the binlog
    assert set(chunks[3].changes[2].after) >= {"removed", "tenant_id", "customer_no"}


def test_cursors_resume_with_a_new_reader(mysql_settings, shop):
    db, aggregates = shop
    settings = source_settings(mysql_settings)
    with SnapshotReader(settings, aggregates, chunk_size=1) as reader:
        reader.open()
        full = read_all(reader)
        # every cursor continues exactly after its chunk (same reader, same snapshot)
        for i, chunk in enumerate(full):
            assert changes_of(full[:i + 1] + read_all(reader, chunk.cursor)) == changes_of(full), i
    assert len(full) == 8 and full[-1].cursor == {"done": True}

    first = SnapshotReader(settings, aggregates, chunk_size=1)
    first.open()
    it = first.chunks()
    head = [next(it), next(it)]
    cursor = head[-1].cursor
    first.close()
    assert cursor == {"aggregate": "Order", "after": [2]}

    second = SnapshotReader(settings, aggregates, chunk_size=1)  # a new snapshot, e.g. after a restart
    second.open()
    try:
        rest = read_all(second, cursor)
    finally:
        second.close()
    assert changes_of(head + rest) == changes_of(full)


def test_non_unique_id_pages_on_the_primary_key(mysql_settings, admin_db, fresh_db):
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.events (seq INT PRIMARY KEY, grp INT NOT NULL, v VARCHAR(5))")
        cur.execute(f"INSERT INTO `{fresh_db}`.events VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 1, 'c'), (4, 2, 'd')")
    agg = one_table_mapping(f"{fresh_db}.events", "grp", ["v"])
    with SnapshotReader(source_settings(mysql_settings), [agg], chunk_size=1) as reader:
        reader.open()
        chunks = read_all(reader)
    # seq is read for paging only; the after image holds the mapped columns, as the binlog's would
    assert [c.after for ch in chunks for c in ch.changes] == [{"grp": 1, "v": "a"}, {"grp": 1, "v": "b"},
                                                              {"grp": 1, "v": "c"}, {"grp": 2, "v": "d"}]
    assert chunks[0].cursor == {"aggregate": "Thing", "after": [1, 1]}


def test_estimate_and_progress(mysql_settings, shop):
    db, aggregates = shop
    with SnapshotReader(source_settings(mysql_settings), aggregates, chunk_size=2) as reader:
        reader.open()
        estimate = reader.estimate()
        assert set(estimate) == {f"{db}.orders", f"{db}.order_lines", f"{db}.customers", f"{db}.customer_addresses"}
        progress = SnapshotProgress.from_estimate(aggregates, estimate)
        for chunk in reader.chunks():
            progress.update(chunk)
            assert progress.render().startswith(f"snapshot  {chunk.aggregate} (")
        progress.finish()
    assert progress.rows_done == 3 + 6 + 3 + 4 == progress.rows_total


# ---------------------------------------------------------------- position


def test_position_is_consistent_with_the_snapshot(mysql_settings, admin_db, fresh_db):
    """A writer commits orders continuously while the snapshot opens: every order is either in
    the snapshot or in the binlog after the position, never both, never neither."""
    create_schema(admin_db, fresh_db)
    settings = source_settings(mysql_settings)
    aggregates = shop_mappings(fresh_db)
    committed: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        conn = connect(mysql_settings, fresh_db)
        oid = 100
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    oid += 1
                    cur.execute("BEGIN")
                    cur.execute("INSERT INTO orders (id, customer_id, total) VALUES (%s, 1, 1)", (oid,))
                    cur.execute("INSERT INTO order_lines VALUES (%s, %s, 'S', 1, 1)", (oid, oid))
                    cur.execute("COMMIT")
                    committed.append(oid)
        finally:
            conn.close()

    conn = connect(mysql_settings, fresh_db)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO orders (id, customer_id, status, total) VALUES (1, 1, 'pending', 5), "
                    "(2, 2, 'pending', 6)")
        cur.execute("INSERT INTO order_lines VALUES (1, 1, 'A', 1, 1), (2, 2, 'B', 1, 1)")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    while len(committed) < 20:
        time.sleep(0.01)
    reader = SnapshotReader(settings, aggregates, chunk_size=50)
    position = reader.open()
    n_at_open = len(committed)
    while len(committed) < n_at_open + 20:
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    # deterministic writes after the snapshot started
    with conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'paid' WHERE id = 1")
        cur.execute("DELETE FROM order_lines WHERE id = 2")
        cur.execute("INSERT INTO orders (id, customer_id, total) VALUES (99999, 9, 9)")  # the last write
    conn.close()
    try:
        snap = [c for ch in reader.chunks() for c in ch.changes]
    finally:
        reader.close()

    assert re.fullmatch(r"\d+-\d+-\d+(,\d+-\d+-\d+)*", position.gtid or ""), position
    assert position.binlog_file.startswith("mysql-bin.") and position.binlog_pos > 4

    snap_orders = {c.after["id"]: c.after for c in snap if c.table.endswith(".orders")}
    snap_lines = {c.after["id"] for c in snap if c.table.endswith(".order_lines")}
    assert snap_orders[1]["status"] == "pending" and 2 in snap_lines and 99999 not in snap_orders

    txns = collect_binlog(settings, {f"{fresh_db}.orders": None, f"{fresh_db}.order_lines": None}, position,
                          lambda ts: any(c.after and c.after.get("id") == 99999 for t in ts for c in t.changes))
    changes: list[RowChange] = [c for t in txns for c in t.changes]
    binlog_orders = [c.after["id"] for c in changes if c.op == "insert" and c.table.endswith(".orders")]
    binlog_lines = [c.after["id"] for c in changes if c.op == "insert" and c.table.endswith(".order_lines")]
    written = set(committed)
    snap_written = {o for o in snap_orders if o in written}
    # the snapshot holds a prefix of the writer's commits, the binlog after the position exactly the rest
    assert snap_written and snap_written == set(committed[:len(snap_written)])
    assert binlog_orders == committed[len(snap_written):] + [99999]
    assert binlog_lines == committed[len(snap_written):]
    assert {l for l in snap_lines if l in written} == snap_written
    assert [(c.op, c.table.split(".")[1], (c.after or c.before)["id"]) for c in changes
            if (c.after or c.before)["id"] in (1, 2)] == [("update", "orders", 1), ("delete", "order_lines", 2)]
    assert all(t.position > position for t in txns)
