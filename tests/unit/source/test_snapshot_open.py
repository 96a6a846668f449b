"""Opening the snapshot: the statement sequence per flavor, with a fake connection (there is no
MySQL in the dev environment; MariaDB's path also runs for real in tests/integration)."""

from __future__ import annotations

import re

import pymysql
import pytest

from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.source.errors import BinlogDisabledError
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.snapshot import SnapshotError, SnapshotReader

SETTINGS = SourceSettings(host="db", user="cdc", password="pw")
ORDERS = AggregateMapping.model_validate({
    "aggregate": "Order",
    "root": {"table": "shop.orders", "id": "id", "fields": ["total"]},
    "children": [{"name": "lines", "table": "shop.order_lines", "id": "id", "parent_key": "order_id",
                  "fields": ["sku"]}],
})
COLUMNS = ("COLUMN_NAME", "DATA_TYPE", "COLUMN_TYPE", "IS_NULLABLE", "NUMERIC_PRECISION", "NUMERIC_SCALE",
           "DATETIME_PRECISION", "CHARACTER_SET_NAME", "CHARACTER_OCTET_LENGTH")
STATS = ("INDEX_NAME", "NON_UNIQUE", "SEQ_IN_INDEX", "COLUMN_NAME", "SUB_PART")


def _columns(sql, args):
    table = args[1]
    rows = {"orders": [("id", "bigint", "bigint(20)", "NO", 19, 0, None, None, None),
                       ("total", "decimal", "decimal(12,2)", "NO", 12, 2, None, None, None)],
            "order_lines": [("id", "bigint", "bigint(20)", "NO", 19, 0, None, None, None),
                            ("order_id", "bigint", "bigint(20)", "NO", 19, 0, None, None, None),
                            ("sku", "varchar", "varchar(64)", "NO", None, None, None, "utf8mb4", 256)]}[table]
    return COLUMNS, rows


def _stats(sql, args):
    rows = [("PRIMARY", 0, 1, "id", None)]
    if args[1] == "order_lines":
        rows.append(("ix_order", 1, 1, "order_id", None))
    return STATS, rows


class FakeConnection:
    """Answers queries from a script [(regex, result)]: result = rows, (columns, rows), an
    exception, or a function (sql, args) -> one of those. Unmatched statements return nothing."""

    def __init__(self, script, log):
        self.script = script
        self.log = log
        self.closed = False

    def cursor(self):
        return FakeCursor(self)

    def close(self):
        self.closed = True
        self.log.append("<close>")


class FakeCursor:
    def __init__(self, conn):
        self.conn = conn
        self.rows = []
        self.description = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        self.conn.log.append(sql)
        for pattern, result in self.conn.script:
            if re.search(pattern, sql):
                if callable(result):
                    result = result(sql, args)
                if isinstance(result, BaseException):
                    raise result
                if isinstance(result, tuple):
                    cols, rows = result
                    self.description = [(c,) for c in cols]
                else:
                    rows = result
                self.rows = list(rows)
                return len(self.rows)
        self.rows = []
        return 0

    def fetchall(self):
        return list(self.rows)

    def fetchone(self):
        return self.rows[0] if self.rows else None


SCHEMA = [(r"information_schema\.COLUMNS", _columns), (r"information_schema\.STATISTICS", _stats)]

MYSQL = [
    (r"^SELECT VERSION\(\)", [("8.0.36",)]),
    (r"^SHOW GLOBAL VARIABLES LIKE", [("gtid_mode", "ON")]),
    (r"^SHOW BINARY LOG STATUS", [("binlog.000003", 1234, "", "", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42")]),
    (r"^SELECT @@GLOBAL.gtid_executed", [("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42",)]),
    *SCHEMA,
]

OPEN_PREFIX = [
    "SELECT VERSION()",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION character_set_results = NULL",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
]
MYSQL_POSITION = [  # preflight.current_position: status and GTID set read until they agree
    "SHOW GLOBAL VARIABLES LIKE %s",
    "SHOW BINARY LOG STATUS",
    "SELECT @@GLOBAL.gtid_executed",
    "SHOW BINARY LOG STATUS",
]


def reader_with(*scripts, aggregates=(ORDERS,)):
    log: list[str] = []
    logs: list[list[str]] = []
    conns = []

    def connect():
        own: list[str] = []
        logs.append(own)
        conn = FakeConnection(scripts[len(conns)], own)
        conns.append(conn)
        return conn

    return SnapshotReader(SETTINGS, list(aggregates), connect=connect), logs, conns


def until(log, statement):
    return log[:log.index(statement) + 1]


def test_mysql_ftwrl_sequence():
    reader, logs, conns = reader_with(MYSQL)
    position = reader.open()
    assert position == SourcePosition("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42", "binlog.000003", 1234)
    assert reader.flavor == "mysql" and reader.lock_strategy == "ftwrl"
    # the lock spans only the start of the read view and the position
    assert until(logs[0], "UNLOCK TABLES") == OPEN_PREFIX + [
        "SET SESSION lock_wait_timeout = 10",
        "FLUSH TABLES WITH READ LOCK",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        *MYSQL_POSITION,
        "UNLOCK TABLES",
    ]
    # the schema is read afterwards, inside the snapshot
    assert all("information_schema" in s for s in logs[0][len(until(logs[0], "UNLOCK TABLES")):])
    reader.close()
    assert logs[0][-2:] == ["ROLLBACK", "<close>"]
    reader.close()  # idempotent


def test_mysql_before_82_uses_show_master_status():
    old = [(r"^SHOW BINARY LOG STATUS", pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax")),
           (r"^SHOW MASTER STATUS", [("binlog.000009", 77, "", "", "")]),
           *MYSQL]
    reader, logs, _ = reader_with(old)
    assert reader.open().binlog_file == "binlog.000009"
    assert "SHOW MASTER STATUS" in logs[0]


def test_mysql_without_gtids():
    script = [(r"^SHOW GLOBAL VARIABLES LIKE", [("gtid_mode", "OFF")]), *MYSQL]
    reader, logs, _ = reader_with(script)
    assert reader.open() == SourcePosition(None, "binlog.000003", 1234)
    assert "SELECT @@GLOBAL.gtid_executed" not in logs[0]


def test_mysql_ftwrl_refused_locks_the_mapped_tables_from_a_second_session():
    denied = pymysql.err.OperationalError(1227, "Access denied; you need (at least one of) the RELOAD privilege(s)")
    main = [(r"^FLUSH TABLES WITH READ LOCK", denied), *MYSQL]
    reader, logs, conns = reader_with(main, [])
    reader.open()
    assert reader.lock_strategy == "lock_tables"
    assert until(logs[0], "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY") == OPEN_PREFIX + [
        "SET SESSION lock_wait_timeout = 10",
        "FLUSH TABLES WITH READ LOCK",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ]
    assert "UNLOCK TABLES" not in logs[0]  # the snapshot session holds no lock
    assert logs[1] == ["SET SESSION lock_wait_timeout = 10",
                       "LOCK TABLES `shop`.`orders` READ, `shop`.`order_lines` READ",
                       "UNLOCK TABLES", "<close>"]
    # the helper held its locks while the snapshot started and the position was read: interleave
    # the two logs by the order the statements ran
    assert conns[1].closed


def test_mysql_lock_order_across_sessions():
    order: list[str] = []
    denied = pymysql.err.OperationalError(1045, "Access denied for user 'cdc'@'%'")

    def note(tag):
        def f(sql, args):
            order.append(tag)
            return []
        return f

    main = [(r"^FLUSH TABLES", denied), (r"^START TRANSACTION", note("snapshot")),
            (r"^SHOW BINARY LOG STATUS", lambda s, a: order.append("position") or MYSQL[2][1]), *MYSQL]
    helper = [(r"^LOCK TABLES", note("lock")), (r"^UNLOCK TABLES", note("unlock"))]
    reader, _, _ = reader_with(main, helper)
    reader.open()
    assert order == ["lock", "snapshot", "position", "position", "unlock"]


def test_mysql_no_lock_privilege_at_all():
    denied = pymysql.err.OperationalError(1227, "Access denied; you need the RELOAD privilege")
    no_lock = pymysql.err.OperationalError(1142, "LOCK TABLES command denied to user 'cdc'")
    reader, logs, conns = reader_with([(r"^FLUSH", denied), *MYSQL], [(r"^LOCK TABLES", no_lock)])
    with pytest.raises(SnapshotError, match="RELOAD.*LOCK TABLES"):
        reader.open()
    assert conns[0].closed and conns[1].closed


def test_mysql_ftwrl_timeout_is_not_a_silent_fallback():
    timeout = pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")
    reader, logs, conns = reader_with([(r"^FLUSH", timeout), *MYSQL])
    with pytest.raises(SnapshotError, match="long query"):
        reader.open()
    assert len(conns) == 1 and conns[0].closed


MARIADB = [
    (r"^SELECT VERSION\(\)", [("10.11.19-MariaDB-0+deb12u1-log",)]),
    (r"^SHOW STATUS LIKE 'binlog_snapshot_%'", [("Binlog_snapshot_file", "mysql-bin.000025"),
                                               ("Binlog_snapshot_position", "39588297")]),
    (r"^SELECT BINLOG_GTID_POS", [("0-1-21599",)]),
    (r"information_schema\.CHECK_CONSTRAINTS", []),
    *SCHEMA,
]


def test_mariadb_sequence_takes_no_lock():
    reader, logs, _ = reader_with(MARIADB)
    position = reader.open()
    assert position == SourcePosition("0-1-21599", "mysql-bin.000025", 39588297)
    assert reader.flavor == "mariadb" and reader.lock_strategy is None
    assert until(logs[0], "SELECT BINLOG_GTID_POS(%s, %s)") == OPEN_PREFIX + [
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        "SHOW STATUS LIKE 'binlog_snapshot_%'",
        "SELECT BINLOG_GTID_POS(%s, %s)",
    ]
    assert not any("LOCK" in s for s in logs[0])


def test_mariadb_without_binlog():
    script = [(r"^SHOW STATUS LIKE", [("Binlog_snapshot_file", ""), ("Binlog_snapshot_position", "0")]), *MARIADB]
    reader, logs, conns = reader_with(script)
    with pytest.raises(BinlogDisabledError):
        reader.open()
    assert conns[0].closed


def test_flavor_setting_overrides_detection():
    reader, logs, _ = reader_with(MARIADB)
    reader.settings = SETTINGS.model_copy(update={"flavor": "mysql"})
    with pytest.raises(Exception):
        reader.open()  # the MySQL path runs (and this fake MariaDB has no SHOW BINARY LOG STATUS answer)
    assert "FLUSH TABLES WITH READ LOCK" in logs[0]


def test_missing_table_and_key_column():
    gone = [(r"information_schema\.COLUMNS", (COLUMNS, [])), *MARIADB]
    reader, _, conns = reader_with(gone)
    with pytest.raises(SnapshotError, match="shop.orders does not exist"):
        reader.open()
    assert conns[0].closed
    bad = AggregateMapping.model_validate({"aggregate": "Order", "root": {"table": "shop.orders", "id": "nope"}})
    reader, _, _ = reader_with(MARIADB, aggregates=[bad])
    with pytest.raises(SnapshotError, match="no column 'nope'"):
        reader.open()


def test_cursor_validation():
    reader, _, _ = reader_with(MARIADB)
    with pytest.raises(RuntimeError, match="open"):
        next(reader.chunks())
    reader.open()
    for bad, match in [({"aggregate": "Nope", "after": None}, "Nope"),
                       ({"aggregate": "Order"}, "without"),
                       ({"aggregate": "Order", "after": [1, 2]}, "does not fit"),
                       ({"aggregate": "Order", "child": "x", "orphans_after": None}, "child 'x'")]:
        with pytest.raises(ValueError, match=match):
            next(reader.chunks(bad))
    assert list(reader.chunks({"done": True})) == []
