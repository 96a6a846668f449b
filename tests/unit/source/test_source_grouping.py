"""BinlogSource's event loop against scripted readers: grouping, positions, reconnects.

The readers hand out real pymysqlreplication event classes (made without parsing), so
the exact code path of the daemon runs; only the socket is replaced by a script. The
same guarantees are proven against a real MariaDB in tests/integration/test_source_stream.py.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pymysql
import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT
from pymysqlreplication.event import (GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, NotImplementedEvent, QueryEvent,
                                      RotateEvent, XidEvent)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc_bridge.source.binlog import FL_STANDALONE, BinlogSource, _StreamLost
from cdc_bridge.source.errors import PositionPurgedError, SourceError, SourceUnavailableError
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.preflight import ServerInfo
from cdc_bridge.source.settings import SourceSettings

SETTINGS = SourceSettings(host="db", user="cdc", heartbeat_seconds=0.05, read_timeout_seconds=1,
                          reconnect_initial_backoff=0.01, reconnect_max_backoff=0.02)
MAPPED = SimpleNamespace(schema="s", table="t", table_id=1, columns=[
    SimpleNamespace(name="id", type=FT.LONGLONG, unsigned=False),
    SimpleNamespace(name="v", type=FT.VARCHAR, max_length=40, character_set_name="utf8"),
])
OTHER = SimpleNamespace(schema="s", table="other", table_id=2, columns=[SimpleNamespace(name="id", type=FT.LONG)])


def _event(cls, log_pos=0, ts=1_700_000_000, **attrs):
    ev = object.__new__(cls)
    ev.packet = SimpleNamespace(log_pos=log_pos)
    ev.timestamp = ts
    ev.__dict__.update(attrs)
    return ev


def gtid(g, standalone=False):
    return _event(MariadbGtidEvent, gtid=g, flags=FL_STANDALONE if standalone else 12)


def mysql_gtid(uuid, n):
    return _event(GtidEvent, sid=bytes.fromhex(uuid.replace("-", "")), gno=n)


def xid(pos, ts=1_700_000_000):
    return _event(XidEvent, log_pos=pos, ts=ts)


def query(q, pos=0):
    return _event(QueryEvent, log_pos=pos, query=q, schema=b"s")


def rotate(name):
    return _event(RotateEvent, next_binlog=name, position=4)


def heartbeat():
    return _event(HeartbeatLogEvent)


def row_bytes(i, v):
    return b"\x00" + struct.pack("<q", i) + bytes([len(v)]) + v.encode()


def rows(cls, table, *images):
    body = b"".join(images)
    ev = object.__new__(cls)
    ev.table_id = table.table_id
    ev.fake_table = table
    ev.columns_present_bitmap = b"\x03"
    ev.columns_present_bitmap2 = b"\x03"
    ev.packet = SimpleNamespace(packet=SimpleNamespace(_data=b"HEAD" + body + b"CRC!", _position=4),
                                read_bytes=10, log_pos=0)
    ev.event_size = 10 + len(body)
    ev.timestamp = 0
    return ev


class Reader:
    def __init__(self, source, script):
        self.source = source
        self.script = list(script)
        self.table_map = {}
        self.closed = False

    def fetchone(self):
        if not self.script:
            self.source.stop()
            return heartbeat()
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if hasattr(item, "table_id"):
            # the library reads the table map event that precedes every row event
            self.table_map[item.table_id] = item.fake_table
            item.table_map = self.table_map
        return item

    def close(self):
        self.closed = True


class ScriptedSource(BinlogSource):
    def __init__(self, scripts, start=SourcePosition("0-1-0", "mysql-bin.000001", 4), flavor="mariadb", **kw):
        super().__init__(SETTINGS, {"s.t": None}, start=start, **kw)
        self.scripts = list(scripts)
        self.opened_at: list[SourcePosition] = []
        self.flavor = flavor

    def _prepare(self, first):
        self._info = ServerInfo(flavor=self.flavor, version="test", server_id=1, server_uuid=None,
                                gtid_domain_id=0, gtid_enabled=True, variables={},
                                position=SourcePosition("0-1-0", "mysql-bin.000001", 4))

    def _open_reader(self):
        self.opened_at.append(self._position)
        script = self.scripts.pop(0)
        if isinstance(script, BaseException):
            raise script
        self._reader = Reader(self, script)
        return self._reader

    def _schema_flags(self, schema, table):
        return set(), set()


def run(source):
    return list(source.transactions())


def txns(items):
    return [t for t in items if t is not None]


def lost():
    return _StreamLost(pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"))


def test_one_transaction_with_all_changes_in_order():
    script = [rotate("mysql-bin.000007"), gtid("0-1-5"),
              rows(WriteRowsEvent, MAPPED, row_bytes(1, "a"), row_bytes(2, "b")),
              rows(UpdateRowsEvent, MAPPED, row_bytes(1, "a"), row_bytes(1, "A")),
              rows(DeleteRowsEvent, MAPPED, row_bytes(2, "b")),
              xid(900, ts=1_700_000_123)]
    src = ScriptedSource([script])
    [t] = txns(run(src))
    assert t.gtid == "0-1-5" and t.commit_ts == 1_700_000_123.0
    assert t.position == SourcePosition("0-1-5", "mysql-bin.000007", 900)
    assert [(c.op, c.before, c.after) for c in t.changes] == [
        ("insert", None, {"id": 1, "v": "a"}),
        ("insert", None, {"id": 2, "v": "b"}),
        ("update", {"id": 1, "v": "a"}, {"id": 1, "v": "A"}),
        ("delete", {"id": 2, "v": "b"}, None),
    ]
    assert all(c.table == "s.t" for c in t.changes)
    assert src.last_position == t.position and src.rows_read == 4


def test_unmapped_transactions_advance_position_and_are_merged():
    script = [gtid("0-1-1"), rows(WriteRowsEvent, OTHER, b"\x00\x01\x00\x00\x00"), xid(100),
              gtid("0-1-2", standalone=True), query("CREATE TABLE s.x (a INT)", 200),
              gtid("0-1-3"), rows(WriteRowsEvent, OTHER, b"\x00\x02\x00\x00\x00"), xid(300),
              gtid("0-1-4"), rows(WriteRowsEvent, MAPPED, row_bytes(9, "z")), xid(400)]
    got = txns(run(ScriptedSource([script])))
    # three empty ones merged into the last of them, then the mapped one
    assert [(t.gtid, t.position.binlog_pos, len(t.changes)) for t in got] == [("0-1-3", 300, 0), ("0-1-4", 400, 1)]
    got = txns(run(ScriptedSource([script], coalesce_empty=False)))
    assert [(t.gtid, t.position.gtid, len(t.changes)) for t in got] == [
        ("0-1-1", "0-1-1", 0), ("0-1-2", "0-1-2", 0), ("0-1-3", "0-1-3", 0), ("0-1-4", "0-1-4", 1)]


def test_trailing_empty_transaction_is_delivered_at_stop():
    got = txns(run(ScriptedSource([[gtid("0-1-1", standalone=True), query("DROP TABLE s.x", 50)]])))
    assert [(t.gtid, t.position.binlog_pos) for t in got] == [("0-1-1", 50)]


def test_connection_lost_mid_transaction_rereads_it_from_own_position():
    first = [gtid("0-1-1"), rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), xid(100),
             gtid("0-1-2"), rows(WriteRowsEvent, MAPPED, row_bytes(2, "b")), lost()]
    # the server resumes after 0-1-1: transaction 0-1-2 again, in full
    second = [gtid("0-1-2"), rows(WriteRowsEvent, MAPPED, row_bytes(2, "b")), xid(200),
              gtid("0-1-3"), rows(WriteRowsEvent, MAPPED, row_bytes(3, "c")), xid(300)]
    reasons = []
    src = ScriptedSource([first, second], on_reconnect=reasons.append)
    got = txns(run(src))
    assert [t.gtid for t in got] == ["0-1-1", "0-1-2", "0-1-3"]
    assert [c.after["id"] for t in got for c in t.changes] == [1, 2, 3]
    assert [p.gtid for p in src.opened_at] == ["0-1-0", "0-1-1"]
    assert src.reconnects == 1 and len(reasons) == 1 and "Lost connection" in reasons[0]


def test_idle_ticks_on_heartbeats_and_during_backoff():
    src = ScriptedSource([[heartbeat(), heartbeat(), lost()], [heartbeat()]])
    items = run(src)
    assert items.count(None) >= 3 and not txns(items)


def test_fatal_server_error_is_raised_not_retried():
    purged = _StreamLost(pymysql.err.OperationalError(
        1236, "Could not find GTID state requested by slave in any binlog files."))
    src = ScriptedSource([[purged], [heartbeat()]])
    with pytest.raises(PositionPurgedError, match="Could not find GTID state"):
        run(src)
    assert src.reconnects == 0


def test_bounded_retries_end_in_source_unavailable():
    refused = pymysql.err.OperationalError(2003, "Can't connect to MySQL server (Connection refused)")
    src = ScriptedSource([refused, refused, refused, []], max_reconnect_attempts=3)
    with pytest.raises(SourceUnavailableError, match="after 3 attempt"):
        run(src)


def test_stop_before_iterating_yields_nothing():
    src = ScriptedSource([[gtid("0-1-1"), xid(1)]])
    src.stop()
    assert run(src) == []


def test_rollback_drops_changes_but_moves_position():
    script = [gtid("0-1-1"), rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), query("ROLLBACK", 70)]
    [t] = txns(run(ScriptedSource([script], coalesce_empty=False)))
    assert t.changes == [] and t.position.binlog_pos == 70


def test_ddl_drops_cached_table_maps():
    src = ScriptedSource([[gtid("0-1-1"), rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), xid(10),
                           gtid("0-1-2", standalone=True), query("ALTER TABLE s.t ADD COLUMN w INT", 20)]])
    got = txns(run(src))
    assert [t.gtid for t in got] == ["0-1-1", "0-1-2"]
    assert src._decoders == {}


def test_mysql_gtid_set_and_begin_commit_grouping():
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    script = [rotate("binlog.000002"),
              mysql_gtid(uuid, 6), query("BEGIN"),
              rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), xid(500),
              mysql_gtid(uuid, 7), query("ALTER TABLE s.t ADD x INT", 600),
              mysql_gtid(uuid, 8), query("BEGIN"),
              rows(WriteRowsEvent, MAPPED, row_bytes(2, "b")), query("COMMIT", 700)]
    src = ScriptedSource([script], start=SourcePosition(f"{uuid}:1-5", "binlog.000001", 4), flavor="mysql",
                         coalesce_empty=False)
    got = txns(run(src))
    assert [(t.gtid, t.position.gtid, t.position.binlog_pos, len(t.changes)) for t in got] == [
        (f"{uuid}:6", f"{uuid}:1-6", 500, 1),
        (f"{uuid}:7", f"{uuid}:1-7", 600, 0),
        (f"{uuid}:8", f"{uuid}:1-8", 700, 1),
    ]


def test_mysql_heartbeat_v2_ticks_and_other_unknown_events_are_ignored():
    script = [_event(NotImplementedEvent, event_type=41), _event(NotImplementedEvent, event_type=34),
              gtid("0-1-1"), rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), xid(10)]
    items = run(ScriptedSource([script]))
    assert items[0] is None and [t.gtid for t in txns(items)] == ["0-1-1"]


@pytest.mark.parametrize("event_type,needle", [(166, "log_bin_compress"), (40, "binlog_transaction_compression"),
                                               (26, "INCIDENT"), (42, "tagged GTID")])
def test_events_that_would_lose_rows_stop_the_source(event_type, needle):
    script = [gtid("0-1-1"), _event(NotImplementedEvent, event_type=event_type, log_pos=77)]
    with pytest.raises(SourceError, match=needle):
        run(ScriptedSource([script]))


def test_statement_based_dml_on_mapped_table_is_reported():
    from structlog.testing import capture_logs

    script = [gtid("0-1-1"), query("INSERT INTO s.t VALUES (1, 'a')", 5), query("INSERT INTO s.other VALUES (2)", 6),
              xid(10)]
    with capture_logs() as logs:
        [t] = txns(run(ScriptedSource([script])))
    assert t.changes == [] and t.position.binlog_pos == 10
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1 and errors[0]["tables"] == ["s.t"] and errors[0]["binlog_pos"] == 5


def described_rows(cls, table, start, *images, ts=1_700_000_050, server_id=7):
    """A row event with the header fields the change stream reads (its start offset, time, server id)."""
    ev = rows(cls, table, *images)
    ev.packet.log_pos, ev.packet.event_size, ev.packet.timestamp, ev.packet.server_id = start + 60, 60, ts, server_id
    return ev


def test_described_tables_carry_their_row_events():
    """describe=[...]: each transaction says which row event each of its row changes came from (its start in
    the binlog file, time, server id, and row index), the table's shape, and MySQL's thread id of BEGIN."""
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    script = [mysql_gtid(uuid, 6), _event(QueryEvent, query="BEGIN", schema=b"s", slave_proxy_id=42),
              described_rows(WriteRowsEvent, MAPPED, 400, row_bytes(1, "a"), row_bytes(2, "b")),
              described_rows(WriteRowsEvent, OTHER, 500, b"\x00\x01\x00\x00\x00"),
              described_rows(UpdateRowsEvent, MAPPED, 600, row_bytes(1, "a"), row_bytes(1, "A")),
              xid(900)]
    src = ScriptedSource([script], start=SourcePosition(f"{uuid}:1-5", "binlog.000001", 4), flavor="mysql",
                         describe=["s.t"])
    src._facts["s.t"] = (("id",), {"id": (False, None, "bigint"), "v": (True, None, "varchar")})  # information_schema
    [t] = txns(run(src))
    assert t.row_events is not None and t.row_events.thread == 42
    (a0, a1, shape, pos, ts, sid), (b0, b1, shape2, pos2, _, _) = t.row_events.events
    assert (a0, a1, pos, ts, sid) == (0, 2, 400, 1_700_000_050, 7) and (b0, b1, pos2) == (2, 3, 600)
    assert shape is shape2 and shape.table == "s.t" and shape.primary_key == ("id",)
    assert [c.name for c in shape.columns] == ["id", "v"]
    # without describe: nothing extra
    plain = ScriptedSource([[gtid("0-1-1"), rows(WriteRowsEvent, MAPPED, row_bytes(1, "a")), xid(10)]])
    assert txns(run(plain))[0].row_events is None
