"""Every column type round-trips from INSERT through the real binlog to its normalized value.

docs/types.md is the contract; each expected value below is a row of that table.
"""

from __future__ import annotations

import base64
import threading

import pytest

from cdc_bridge.source import BinlogSource, RowChange, SourceTransaction
from cdc_bridge.source.preflight import current_position
from bridge_harness import connect_db, source_settings

TABLE_DDL = """
CREATE TABLE `{db}`.`all_types` (
  id     INT PRIMARY KEY,
  ti     TINYINT, tiu TINYINT UNSIGNED, b TINYINT(1),
  si     SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i      INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dec_a  DECIMAL(20,6), dec_b DECIMAL(10,0), dec_c DECIMAL(65,30),
  f      FLOAT, d DOUBLE,
  dt     DATETIME, dt6 DATETIME(6), ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL,
  dd     DATE, tm TIME, tm1 TIME(1), tm6 TIME(6), y YEAR,
  c      CHAR(5), vc VARCHAR(300), tx TEXT, lt LONGTEXT, lat VARCHAR(20) CHARACTER SET latin1,
  bn     BINARY(4), vb VARBINARY(8), bl BLOB,
  j      JSON, e ENUM('pending','paid','shipped'), st SET('a','b','c'),
  bt     BIT(10), bt64 BIT(64)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

COLUMNS = ["id", "ti", "tiu", "b", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "dec_a", "dec_b", "dec_c",
           "f", "d", "dt", "dt6", "ts", "ts0", "dd", "tm", "tm1", "tm6", "y", "c", "vc", "tx", "lt", "lat",
           "bn", "vb", "bl", "j", "e", "st", "bt", "bt64"]

NESTED_JSON = '{"a": {"b": [1, 2.5, "x", true, null]}, "\u00fc": "\U0001F600", "n": 12345678901234567890}'
BIG_DEC65 = "12345678901234567890123456789012345.123456789012345678901234567890"

# (SQL literal, expected value) per column, rows 1 (maxima, text) and 2 (minima, negatives)
ROW1 = {
    "id": ("1", 1), "ti": ("127", 127), "tiu": ("255", 255), "b": ("1", True),
    "si": ("32767", 32767), "siu": ("65535", 65535), "mi": ("8388607", 8388607), "miu": ("16777215", 16777215),
    "i": ("2147483647", 2147483647), "iu": ("4294967295", 4294967295),
    "bi": ("9223372036854775807", 9223372036854775807), "biu": ("18446744073709551615", 18446744073709551615),
    "dec_a": ("12345678901234.123456", "12345678901234.123456"), "dec_b": ("9999999999", "9999999999"),
    "dec_c": (BIG_DEC65, BIG_DEC65),
    "f": ("1.1", 1.1), "d": ("3.141592653589793", 3.141592653589793),
    "dt": ("'9999-12-31 23:59:59'", "9999-12-31T23:59:59"),
    "dt6": ("'2024-02-29 13:14:15.123456'", "2024-02-29T13:14:15.123456"),
    # written with session time_zone = '+05:30': the binlog holds UTC
    "ts": ("'2024-01-01 10:00:00.123456'", "2024-01-01T04:30:00.123456Z"),
    "ts0": ("'2024-06-30 23:59:59'", "2024-06-30T18:29:59Z"),
    "dd": ("'2024-02-29'", "2024-02-29"),
    "tm": ("'838:59:59'", "838:59:59"), "tm1": ("'-12:34:56.7'", "-12:34:56.700000"),
    "tm6": ("'123:45:06.000007'", "123:45:06.000007"), "y": ("2155", 2155),
    "c": ("'ab'", "ab"), "vc": ("'h\u00e9llo \U0001F600 " + "x" * 200 + "'", "h\u00e9llo \U0001F600 " + "x" * 200),
    "tx": ("'\U0001F680 rocket \u00e0 la carte'", "\U0001F680 rocket \u00e0 la carte"),
    "lt": ("REPEAT('\u00df', 70000)", "\u00df" * 70000),
    "lat": ("'caf\u00e9 \u20ac'", "caf\u00e9 \u20ac"),
    "bn": ("x'0102'", base64.b64encode(b"\x01\x02\x00\x00").decode()),
    "vb": ("x'00ff'", "AP8="),
    "bl": ("x'00ff10fe80'", base64.b64encode(b"\x00\xff\x10\xfe\x80").decode()),
    "j": (f"'{NESTED_JSON}'", {"a": {"b": [1, 2.5, "x", True, None]}, "\u00fc": "\U0001F600",
                               "n": 12345678901234567890}),
    "e": ("'paid'", "paid"), "st": ("'c,a'", ["a", "c"]),
    "bt": ("b'1000000001'", 513), "bt64": ("b'" + "1" * 64 + "'", 2**64 - 1),
}
ROW2 = {
    "id": ("2", 2), "ti": ("-128", -128), "tiu": ("0", 0), "b": ("0", False),
    "si": ("-32768", -32768), "siu": ("0", 0), "mi": ("-8388608", -8388608), "miu": ("0", 0),
    "i": ("-2147483648", -2147483648), "iu": ("0", 0),
    "bi": ("-9223372036854775808", -9223372036854775808), "biu": ("0", 0),
    "dec_a": ("-99999999999999.999999", "-99999999999999.999999"), "dec_b": ("-42", "-42"),
    "dec_c": ("-0.000000000000000000000000000001", "-0.000000000000000000000000000001"),
    "f": ("-0.5", -0.5), "d": ("-2.5e-300", -2.5e-300),
    "dt": ("'1000-01-01 00:00:00'", "1000-01-01T00:00:00"),
    "dt6": ("'2024-01-01 00:00:00'", "2024-01-01T00:00:00.000000"),
    "ts": ("'1970-01-01 05:30:01'", "1970-01-01T00:00:01.000000Z"),
    "ts0": ("'2038-01-19 08:44:07'", "2038-01-19T03:14:07Z"),
    "dd": ("'1000-01-01'", "1000-01-01"),
    "tm": ("'-838:59:59'", "-838:59:59"), "tm1": ("'-00:00:00.5'", "-00:00:00.500000"),
    "tm6": ("'-00:00:00.000001'", "-00:00:00.000001"), "y": ("1901", 1901),
    "c": ("''", ""), "vc": ("''", ""), "tx": ("''", ""), "lt": ("'[]'", "[]"), "lat": ("''", ""),
    "bn": ("x'00000000'", "AAAAAA=="), "vb": ("x''", ""), "bl": ("x''", ""),
    "j": ("'[]'", []), "e": ("'pending'", "pending"), "st": ("''", []),
    "bt": ("b'0'", 0), "bt64": ("b'0'", 0),
}


class Collector:
    """Runs source.transactions() in a thread and keeps what it yields."""

    def __init__(self, source: BinlogSource) -> None:
        self.source = source
        self.items: list[SourceTransaction | None] = []
        self.error: BaseException | None = None
        self.done = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.source.transactions():
                with self.cond:
                    self.items.append(item)
                    self.cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def changes(self, table: str) -> list[RowChange]:
        with self.cond:
            return [c for t in self.items if t is not None for c in t.changes if c.table == table]

    def wait_changes(self, table: str, n: int, timeout: float = 15.0) -> list[RowChange]:
        with self.cond:
            self.cond.wait_for(lambda: self.done or len(self.changes(table)) >= n, timeout)
        if self.error is not None:
            raise self.error
        got = self.changes(table)
        assert len(got) >= n, f"expected {n} changes of {table}, got {len(got)}"
        return got

    def stop(self) -> None:
        self.source.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "transactions() did not end after stop()"


settings = source_settings
connect = connect_db


def _insert(cur, row: dict) -> None:
    cur.execute(f"INSERT INTO all_types ({', '.join(row)}) VALUES ({', '.join(v[0] for v in row.values())})")


@pytest.fixture
def types_run(mysql_settings, admin_db, fresh_db):
    """all_types with rows 1 and 2, an all-NULL row 3 and a zero-date row 4, then an UPDATE
    and a DELETE; yields the collected changes of the table."""
    with admin_db.cursor() as cur:
        cur.execute(TABLE_DDL.format(db=fresh_db))
        start = current_position(admin_db)
    source = BinlogSource(settings(mysql_settings), {f"{fresh_db}.all_types": None}, start=start)
    collector = Collector(source)
    conn = connect(mysql_settings, fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+05:30'")
            _insert(cur, ROW1)
            _insert(cur, ROW2)
            cur.execute("INSERT INTO all_types (id) VALUES (3)")
            cur.execute("SET sql_mode = ''")  # allows zero dates
            cur.execute("INSERT INTO all_types (id, dt, dt6, ts0, dd, y) VALUES "
                        "(4, '2024-00-10 10:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00', 0)")
            cur.execute("UPDATE all_types SET dec_a = -0.5, b = 0, st = 'b', e = 'shipped' WHERE id = 1")
            cur.execute("DELETE FROM all_types WHERE id = 2")
        yield collector.wait_changes(f"{fresh_db}.all_types", 6)
    finally:
        conn.close()
        collector.stop()


def test_every_type_round_trips_to_its_documented_value(types_run):
    inserts = [c for c in types_run if c.op == "insert"]
    assert [c.after["id"] for c in inserts] == [1, 2, 3, 4]
    for change, row in ((inserts[0], ROW1), (inserts[1], ROW2)):
        assert list(change.after) == COLUMNS  # all columns, in table order
        expected = {col: v[1] for col, v in row.items()}
        mismatches = {col: (change.after[col], want) for col, want in expected.items()
                      if change.after[col] != want or type(change.after[col]) is not type(want)}
        assert not mismatches, mismatches
        assert change.zero_dates is None and change.before is None


def test_nulls_are_none_and_not_zero_dates(types_run):
    row3 = next(c for c in types_run if c.op == "insert" and c.after["id"] == 3)
    assert all(row3.after[col] is None for col in COLUMNS if col != "id")
    assert row3.zero_dates is None


def test_zero_dates_are_none_and_flagged(types_run):
    row4 = next(c for c in types_run if c.op == "insert" and c.after["id"] == 4)
    assert row4.zero_dates == ["dt", "dt6", "ts0", "dd"]
    assert all(row4.after[col] is None for col in row4.zero_dates)
    assert row4.after["y"] == 0          # YEAR 0000 is a value, distinguishable from NULL (issue 16)


def test_update_and_delete_images(types_run):
    update = next(c for c in types_run if c.op == "update")
    assert update.before["dec_a"] == "12345678901234.123456" and update.after["dec_a"] == "-0.500000"
    assert (update.before["b"], update.after["b"]) == (True, False)
    assert (update.before["st"], update.after["st"]) == (["a", "c"], ["b"])
    assert update.after["e"] == "shipped" and update.after["lt"] == "\u00df" * 70000
    delete = next(c for c in types_run if c.op == "delete")
    assert delete.after is None and delete.before["id"] == 2 and delete.before["bi"] == -9223372036854775808


def test_schema_facts_follow_alter(mysql_settings, admin_db, fresh_db):
    """TINYINT(1) and MariaDB JSON come from information_schema: re-read after an ALTER.

    information_schema tells the schema of *now*: the test lets the source read the first
    row before the ALTER (docs/types.md, "Schema facts", explains the catch-up case)."""
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.flags (id INT PRIMARY KEY, b TINYINT(1), doc LONGTEXT)")
        start = current_position(admin_db)
    collector = Collector(BinlogSource(settings(mysql_settings), {f"{fresh_db}.flags": None}, start=start))
    conn = connect(mysql_settings, fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("""INSERT INTO flags VALUES (1, 1, '{"k": 1}')""")
            collector.wait_changes(f"{fresh_db}.flags", 1)
            cur.execute("ALTER TABLE flags MODIFY b TINYINT, MODIFY doc JSON")
            cur.execute("""INSERT INTO flags VALUES (2, 1, '{"k": 2}')""")
        first, second = collector.wait_changes(f"{fresh_db}.flags", 2)
        assert first.after == {"id": 1, "b": True, "doc": '{"k": 1}'}   # TINYINT(1), plain LONGTEXT
        assert second.after == {"id": 2, "b": 1, "doc": {"k": 2}}       # TINYINT(4), JSON
    finally:
        conn.close()
        collector.stop()


def test_only_the_mapped_columns_are_kept(mysql_settings, admin_db, fresh_db):
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.narrow (id INT PRIMARY KEY, keep_me VARCHAR(10), "
                    f"big BLOB, amount DECIMAL(8,2))")
        start = current_position(admin_db)
    source = BinlogSource(settings(mysql_settings), {f"{fresh_db}.narrow": {"id", "amount"}}, start=start)
    collector = Collector(source)
    conn = connect(mysql_settings, fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO narrow VALUES (1, 'x', REPEAT('z', 1000), 12.5)")
        [change] = collector.wait_changes(f"{fresh_db}.narrow", 1)
        assert change.after == {"id": 1, "amount": "12.50"}
    finally:
        conn.close()
        collector.stop()
