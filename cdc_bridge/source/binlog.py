"""BinlogSource: committed transactions of normalized row changes, read from the binlog.

    source = BinlogSource(settings, {"shop.orders": None, "shop.order_lines": {"id", "sku"}}, start=saved)
    for txn in source.transactions():      # SourceTransaction, or None as an idle tick
        ...
    source.stop()                          # from any thread: the loop above ends promptly

How it works, and why:

* python-mysql-replication speaks the replication protocol and parses table maps and
  query events; we decode the *rows* ourselves (values.py) straight from the event
  bytes, which is both faster than the library's generic per-column code and gives the
  JSON-friendly values of docs/types.md in one pass.
* Row events of tables already seen are read from the raw packets (`_direct_rows`): the
  library builds a Python object per event, which cost as much as decoding the rows. Any
  other event, and any table map that differs from the library's, is pushed back to it.
* The source owns its position. The library, after a dropped connection, silently
  reconnects from the position it was *created* with, which would replay (or, with
  MariaDB, restart from scratch). So the stream connection is a subclass whose read
  errors escape the library, and every connection problem ends the reader; a new
  reader starts from our last transaction boundary. A transaction cut by a dropped
  connection is discarded and read again in full: nothing is skipped or doubled.
* Silent network drops: the server sends a heartbeat every `heartbeat_seconds` when
  idle, and the socket has a read timeout of `read_timeout_seconds`, so a dead peer
  becomes an error within that time instead of a hang.
* Idle ticks: `None` is yielded at least every ~heartbeat_seconds while no transaction
  arrives (server heartbeats, a large unmapped transaction, reconnect backoff), so the
  pipeline can flush batches by time.
* Transactions of unmapped tables still move the position: they are yielded with no
  changes; consecutive ones are merged into one (the last one's GTID, timestamp and
  position) to keep a busy unrelated workload cheap.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

import pymysql
import structlog
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (GtidEvent, HeartbeatLogEvent, MariadbGtidEvent, NotImplementedEvent, QueryEvent,
                                      RotateEvent, XAPrepareEvent, XidEvent)
from pymysqlreplication.row_event import DeleteRowsEvent, PartialUpdateRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc_bridge.source.errors import (MissingPrivilegesError, PositionPurgedError, ServerIdConflictError, SourceError,
                                      SourceUnavailableError)
from cdc_bridge.source.gtid import MariadbGtid, add_mysql_gtid, format_mariadb_gtid_list, parse_mariadb_gtid_list
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.preflight import (ServerInfo, binlog_files, connect, first_binlog_gtid_list, grant_statement,
                                         inspect_server, position_available)
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.transaction import RowChange, RowEvents, SourceTransaction, TableShape
from cdc_bridge.source.values import (ROW_DECODER, ColumnSpec, TableDecoder, UnsupportedColumnError, is_tinyint1,
                                      json_checked_columns)

log = structlog.get_logger(__name__)

# MariaDB GTID event flag: the group is a single statement without BEGIN/COMMIT (DDL)
FL_STANDALONE = 1

# server errors that no reconnect can fix; all other errors are treated as connection trouble
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236
ER_SLAVE_SAME_ID = 4052  # MariaDB: "A slave with the same server_uuid/server_id is already connected"
ER_SPECIFIC_ACCESS_DENIED = 1227
_PRIVILEGE_ERRORS = {1044, 1142, 1143, ER_SPECIFIC_ACCESS_DENIED}

# Event types the library does not parse. Skipping them would silently lose rows or GTIDs,
# so they stop the source with the reason; HEARTBEAT_LOG_EVENT_V2 is MySQL 8.0.26+'s heartbeat.
HEARTBEAT_LOG_EVENT_V2 = 41
_UNREADABLE_EVENTS = {
    26: "an INCIDENT event: the server recorded that changes may be missing from its binlog (e.g. a "
        "failed non-transactional write); take a new snapshot (cdc-bridge snapshot)",
    40: "a compressed transaction (binlog_transaction_compression=ON); set it OFF on the server",
    42: "a tagged GTID (MySQL 8.3+ gtid tags), which cdc-bridge cannot read yet",
    **{t: "a compressed event (log_bin_compress=ON); set log_bin_compress=OFF on the server"
       for t in range(165, 172)},
}

# the raw row events read without the library (v1: MariaDB, v2: MySQL): event type -> (op, v2)
TABLE_MAP_EVENT = 19
_DIRECT_ROWS = {23: ("insert", False), 24: ("update", False), 25: ("delete", False),
                30: ("insert", True), 31: ("update", True), 32: ("delete", True)}
_OPS = {WriteRowsEvent: "insert", UpdateRowsEvent: "update", DeleteRowsEvent: "delete"}
_HEADER = struct.Struct("<I1xIII")  # after the OK byte: timestamp, (type), server_id, event_size, log_pos


class _DirectRows:
    """Marks a row event read from its raw packet in BinlogSource._stream."""


_DIRECT = _DirectRows()

# the other events of every transaction, read from the raw packet too (MariaDB): XID (the commit),
# GTID (the start); ANNOTATE_ROWS (the statement, written before each one's rows) is not among the
# events the library hands us (only_events): it is skipped, as the library would
XID_EVENT, MARIADB_ANNOTATE_ROWS_EVENT, MARIADB_GTID_EVENT = 16, 160, 162
_MARIADB_GTID = struct.Struct("<QIB")   # seq_no, domain_id, flags (what MariadbGtidEvent reads)


class _DirectXid:
    """An XID event read from its raw packet: what _stream reads of an XidEvent."""

    __slots__ = ("timestamp", "log_pos")

    def __init__(self, timestamp: int, log_pos: int) -> None:
        self.timestamp = timestamp
        self.log_pos = log_pos


class _DirectMariadbGtid:
    """A MariaDB GTID event read from its raw packet: what _stream reads of a MariadbGtidEvent."""

    __slots__ = ("gtid", "flags")

    def __init__(self, gtid: str, flags: int) -> None:
        self.gtid = gtid
        self.flags = flags


def _direct_event(data: bytes, etype: int) -> _DirectXid | _DirectMariadbGtid | None:
    """An XID or MariaDB GTID event from its raw packet (the OK byte, the header, the body); None for a
    packet too short to hold it (the library then reads it, and says what is wrong)."""
    if len(data) < 20 + (_MARIADB_GTID.size if etype == MARIADB_GTID_EVENT else 0):
        return None
    ts, server_id, _, log_pos = _HEADER.unpack_from(data, 1)
    if etype == XID_EVENT:
        return _DirectXid(ts, log_pos)
    seq_no, domain_id, flags = _MARIADB_GTID.unpack_from(data, 20)
    return _DirectMariadbGtid(f"{domain_id}-{server_id}-{seq_no}", flags)

_DDL = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(ALTER|CREATE|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE | re.DOTALL)
_DML = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(INSERT|UPDATE|DELETE|REPLACE|LOAD)\b", re.IGNORECASE | re.DOTALL)
_BEGIN, _COMMIT, _ROLLBACK, _DDL_STATEMENT, _OTHER = "begin", "commit", "rollback", "ddl", "other"


def _query_kind(query: str) -> str:
    """What a QUERY event means for transaction grouping."""
    head = query.lstrip()[:16].upper()
    if head.startswith("BEGIN") or head.startswith("XA START"):
        return _BEGIN
    if head.startswith("COMMIT"):
        return _COMMIT
    if head.startswith("ROLLBACK") and not head.startswith("ROLLBACK TO"):
        return _ROLLBACK
    if _DDL.match(query):
        return _DDL_STATEMENT
    return _OTHER


class _StreamLost(Exception):
    """The stream connection failed; carries the original error. Not an OperationalError on
    purpose: the library would catch that and reconnect from its stale start position."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _StreamConnection(pymysql.connections.Connection):
    """The replication connection: its read errors bypass the library's reconnect logic.

    `unread(packet)` hands a packet the source has looked at (and left to the library) to the
    library's next read."""

    _unread: Any = None

    def unread(self, packet: Any) -> None:
        self._unread = packet

    def _read_packet(self, *args: Any, **kwargs: Any) -> Any:
        packet = self._unread
        if packet is not None:
            self._unread = None
            return packet
        try:
            return super()._read_packet(*args, **kwargs)
        except (pymysql.err.MySQLError, OSError) as e:
            raise _StreamLost(e) from e


def _reason(e: BaseException) -> str:
    if isinstance(e, _StreamLost):
        e = e.original
    if isinstance(e, pymysql.err.MySQLError) and len(e.args) >= 2:
        return f"{e.args[1]} ({e.args[0]})"
    return f"{type(e).__name__}: {e}"


def _error_code(e: BaseException) -> int | None:
    if isinstance(e, _StreamLost):
        e = e.original
    if isinstance(e, pymysql.err.MySQLError) and e.args and isinstance(e.args[0], int):
        return e.args[0]
    return None


class BinlogSource:
    """Reads committed source transactions of the mapped tables from a MySQL/MariaDB binlog.

    tables: "schema.table" -> the columns to keep (None = all). Other tables' rows are
            skipped early; their transactions still advance the position.
    start:  where to resume (the position of the last transaction fully processed);
            None = from the server's current position (only changes from now on), or,
            with from_earliest=True, from the oldest binlog the server still has.
    on_reconnect: called with a reason string before every reconnect attempt (also a
            public attribute, so it can be set after construction).
    max_reconnect_attempts: consecutive failed attempts before SourceUnavailableError;
            None (default) retries forever, logging every attempt.
    coalesce_empty: merge consecutive transactions without mapped changes into one.
    describe: tables whose row events are described in SourceTransaction.row_events (the change
            stream: column types, primary key, binlog offsets); decode every column of them.
    """

    def __init__(self, settings: SourceSettings, tables: dict[str, set[str] | None],
                 start: SourcePosition | None = None, *,
                 from_earliest: bool = False,
                 on_reconnect: Callable[[str], None] | None = None,
                 max_reconnect_attempts: int | None = None,
                 coalesce_empty: bool = True,
                 describe: Collection[str] | None = None) -> None:
        self.settings = settings
        self._tables: dict[str, frozenset[str] | None] = {}
        for name, cols in tables.items():
            schema, dot, table = name.partition(".")
            if not dot or not schema or not table:
                raise ValueError(f"table {name!r} must be written as schema.table")
            self._tables[name] = None if cols is None else frozenset(cols)
        self._start = start
        self._from_earliest = from_earliest and start is None
        self.on_reconnect = on_reconnect
        self._max_attempts = max_reconnect_attempts
        self._coalesce = coalesce_empty
        self._describe = frozenset(describe or ())
        # CDC_BRIDGE_DIRECT_ROWS=0: every event through python-mysql-replication (see _direct_rows)
        self._direct_reading = os.environ.get("CDC_BRIDGE_DIRECT_ROWS") != "0"

        self._stop = threading.Event()
        self._iterating = False
        self._ready = False        # first preflight done and start position fixed
        self._session_ok = False   # the current connection has delivered events
        self._stream_conn: pymysql.connections.Connection | None = None
        self._reader: BinLogStreamReader | None = None
        self._meta_conn: pymysql.connections.Connection | None = None
        self._info: ServerInfo | None = None
        self._position: SourcePosition | None = start
        self._pending: SourceTransaction | None = None  # merged empty transactions not yet yielded

        # table_id -> (the library's Table object it was built from, decoder or None if unmapped)
        self._decoders: dict[int, tuple[Any, TableDecoder | None]] = {}
        self._flags: dict[str, tuple[set[str], set[str]]] = {}  # "schema.table" -> (tinyint1, json cols)
        self._shapes: dict[int, TableShape] = {}  # table_id -> shape of a described table (same life as _decoders)
        self._facts: dict[str, tuple[tuple[str, ...], dict]] = {}  # "schema.table" -> (primary key, info); until DDL
        self._ddl_patterns = [
            (name, re.compile(rf"\b{re.escape(name.partition('.')[2])}\b", re.IGNORECASE), name.partition(".")[0])
            for name in self._tables
        ]

        # counters (the lead wires them to Prometheus)
        self.reconnects = 0
        self.last_reconnect_reason: str | None = None
        self.transactions_read = 0
        self.rows_read = 0
        self.direct_row_events = 0   # row events read from their raw packets (the rest went through the library)

    # ------------------------------------------------------------------ public

    @property
    def last_position(self) -> SourcePosition | None:
        """Position after the last transaction read completely (yielded, or merged and about to be)."""
        return self._position

    @property
    def server_info(self) -> ServerInfo | None:
        return self._info

    @property
    def connection_id(self) -> int | None:
        """Server thread id of the current replication connection (the 'Binlog Dump' thread)."""
        conn = self._stream_conn
        return conn.server_thread_id[0] if conn is not None and conn.server_thread_id else None

    def stop(self) -> None:
        """Make transactions() end promptly. Safe from any thread and from signal handlers."""
        self._stop.set()
        conn = self._stream_conn  # no lock: a signal handler must never block
        sock = getattr(conn, "_sock", None) if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def transactions(self) -> Iterator[SourceTransaction | None]:
        """Committed transactions in binlog order, with `None` as idle ticks. Iterate once."""
        if self._iterating:
            raise RuntimeError("BinlogSource.transactions() can only be iterated once")
        self._iterating = True
        failures = 0
        delay = self.settings.reconnect_initial_backoff
        try:
            while not self._stop.is_set():
                self._session_ok = False
                try:
                    self._prepare(first=not self._ready)
                    yield from self._stream()
                    break  # _stream returns only when stopped
                except (_StreamLost, pymysql.err.MySQLError, OSError) as e:
                    fatal = self._fatal_error(e)
                    if fatal is not None:
                        raise fatal from e
                    reason = _reason(e)
                finally:
                    self._close_reader()
                if self._stop.is_set():
                    break
                if self._session_ok:  # the last connection streamed: start backing off afresh
                    failures = 0
                    delay = self.settings.reconnect_initial_backoff
                failures += 1
                if self._max_attempts is not None and failures >= self._max_attempts:
                    raise SourceUnavailableError(self.settings.describe(), failures, reason)
                wait = min(delay, self.settings.reconnect_max_backoff) * random.uniform(0.8, 1.2)
                self.reconnects += 1
                self.last_reconnect_reason = reason
                log.warning("binlog source reconnecting", reason=reason, attempt=failures,
                            retry_in=round(wait, 2), position=str(self._position) if self._position else None)
                if self.on_reconnect is not None:
                    try:
                        self.on_reconnect(reason)
                    except Exception:  # noqa: BLE001 - a metrics callback must not stop the stream
                        log.exception("on_reconnect callback failed")
                yield from self._idle(wait)
                delay = min(delay * 2, self.settings.reconnect_max_backoff)
            if self._pending is not None:
                yield self._take_pending()
        finally:
            self._close_reader()
            self._close_meta()

    # ------------------------------------------------------------------ setup

    def _prepare(self, first: bool) -> None:
        """Preflight (fail fast on config errors) and fix the start position.

        Connection errors propagate as they are: transactions() retries them."""
        conn = connect(self.settings)
        try:
            # on a reconnect the settings may have changed with a server restart; another
            # replica with our id would have kicked us already (ER_SLAVE_SAME_ID)
            info = inspect_server(conn, self.settings, check_replicas=first)
        finally:
            conn.close()
        self._info = info
        if not first:
            return
        for w in info.warnings:
            log.warning("binlog source preflight", warning=w)
        if self._position is None:
            self._position = self._earliest(info) if self._from_earliest else info.position
        else:
            self._position = self._complete_start(self._position, info)
            if not position_available(self._meta(), self._position, info.flavor):
                raise PositionPurgedError(str(self._position), detail=f"the server is at {info.position}")
        self._ready = True
        log.info("binlog source starting", flavor=info.flavor, version=info.version,
                 position=str(self._position), server_id=self.settings.server_id, tables=sorted(self._tables),
                 row_decoder=ROW_DECODER, row_events="direct" if self._direct_reading else "library")

    def _earliest(self, info: ServerInfo) -> SourcePosition:
        """The position before the oldest binlog file the server still has."""
        conn = self._meta()
        files = binlog_files(conn)
        if not files:
            return info.position
        first = files[0][0]
        if info.flavor == "mariadb":
            # its Gtid_list: the last GTID per domain before this file ("" on a fresh server)
            return SourcePosition(gtid=first_binlog_gtid_list(conn, files) or "", binlog_file=first, binlog_pos=4)
        if info.gtid_enabled:
            with conn.cursor() as cur:
                cur.execute("SELECT @@GLOBAL.gtid_purged")
                purged = str(cur.fetchone()[0] or "").replace("\n", "")
            return SourcePosition(gtid=purged, binlog_file=first, binlog_pos=4)
        return SourcePosition(gtid=None, binlog_file=first, binlog_pos=4)

    def _complete_start(self, pos: SourcePosition, info: ServerInfo) -> SourcePosition:
        """MariaDB resumes by GTID only (the library ignores file+offset): derive it if missing."""
        if info.flavor == "mariadb" and pos.gtid is None:
            with self._meta().cursor() as cur:
                cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (pos.binlog_file, pos.binlog_pos))
                row = cur.fetchone()
            if row is None or row[0] is None:
                raise PositionPurgedError(str(pos), detail="BINLOG_GTID_POS() cannot map it to a GTID position")
            return SourcePosition(gtid=str(row[0]), binlog_file=pos.binlog_file, binlog_pos=pos.binlog_pos)
        if info.flavor == "mysql" and info.gtid_enabled and pos.gtid is None:
            raise SourceError(f"the server runs with gtid_mode=ON but the start position {pos} has no GTID set; "
                              f"take a new snapshot (cdc-bridge snapshot) to get a GTID position")
        return pos

    def _meta(self) -> pymysql.connections.Connection:
        """A connection for schema questions the binlog does not answer."""
        if self._meta_conn is None or not self._meta_conn.open:
            self._meta_conn = connect(self.settings)
        return self._meta_conn

    def _close_meta(self) -> None:
        conn, self._meta_conn = self._meta_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                pass

    def _connect_for_reader(self, **kwargs: Any) -> pymysql.connections.Connection:
        if "db" in kwargs:  # the library's control connection (pymysql deprecated `db`)
            kwargs["database"] = kwargs.pop("db")
            return pymysql.connect(**kwargs)
        if self._stream_conn is not None or self._stop.is_set():
            # the library reconnecting on its own (from its stale start position): refuse
            raise _StreamLost(ConnectionError("replication connection lost"))
        conn = _StreamConnection(**kwargs)
        self._stream_conn = conn
        return conn

    def _open_reader(self) -> BinLogStreamReader:
        pos = self._position
        info = self._info
        assert pos is not None and info is not None
        schemas = {n.partition(".")[0] for n in self._tables}
        names = {n.partition(".")[2] for n in self._tables}
        kwargs: dict[str, Any] = dict(
            connection_settings=self.settings.connection_kwargs(),
            server_id=self.settings.server_id,
            blocking=True,
            only_events=[MariadbGtidEvent, GtidEvent, QueryEvent, XidEvent, XAPrepareEvent, RotateEvent,
                         HeartbeatLogEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent,
                         PartialUpdateRowsEvent, NotImplementedEvent],
            # unknown event types reach us (as NotImplementedEvent): see _UNREADABLE_EVENTS
            filter_non_implemented_events=False,
            only_schemas=list(schemas),
            only_tables=list(names),
            # table ids change with every ALTER (and we drop the cache on DDL): no need to
            # re-parse the table map that precedes every row event
            freeze_schema=True,
            slave_heartbeat=self.settings.heartbeat_seconds,
            pymysql_wrapper=self._connect_for_reader,
            report_slave={"hostname": f"cdc-bridge@{socket.gethostname()}"[:60]},
            enable_logging=False,
        )
        if info.flavor == "mariadb":
            kwargs.update(is_mariadb=True, auto_position=pos.gtid or "")
        elif pos.gtid:
            kwargs.update(auto_position=pos.gtid)
        else:
            kwargs.update(log_file=pos.binlog_file, log_pos=pos.binlog_pos, resume_stream=True)
        self._decoders.clear()
        self._shapes.clear()
        self._reader = BinLogStreamReader(**kwargs)
        return self._reader

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
        self._stream_conn = None

    def _fatal_error(self, e: BaseException) -> SourceError | None:
        """The SourceError for errors that no reconnect can fix; None for connection trouble."""
        code = _error_code(e)
        if code is None:
            return None
        message = _reason(e)
        if code == ER_SLAVE_SAME_ID or "same server_uuid/server_id" in message or "same server_id" in message:
            return ServerIdConflictError(self.settings.server_id, detail=message)
        if code == ER_MASTER_FATAL_ERROR_READING_BINLOG:
            return PositionPurgedError(str(self._position), detail=f"server said: {message}")
        if code in _PRIVILEGE_ERRORS:
            user = f"'{self.settings.user}'@'%'"
            flavor = self._info.flavor if self._info else "mysql"
            return MissingPrivilegesError(self.settings.user, ["REPLICATION SLAVE"],
                                          grant_statement(flavor, user), detail=message)
        return None

    # ------------------------------------------------------------------ streaming

    def _take_pending(self) -> SourceTransaction:
        txn, self._pending = self._pending, None
        assert txn is not None
        return txn

    def _idle(self, seconds: float) -> Iterator[None]:
        """Wait (interruptibly), ticking every heartbeat."""
        deadline = time.monotonic() + seconds
        hb = self.settings.heartbeat_seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._stop.wait(min(remaining, hb)):
                return
            if self._pending is not None:
                yield self._take_pending()  # type: ignore[misc]
            yield None

    def _stream(self) -> Iterator[SourceTransaction | None]:
        reader = self._open_reader()
        pos = self._position
        assert pos is not None and self._info is not None
        mariadb = self._info.flavor == "mariadb"
        fetch = reader.fetchone
        stopping = self._stop.is_set
        monotonic = time.monotonic
        hb = self.settings.heartbeat_seconds
        coalesce = self._coalesce
        describe = bool(self._describe)
        shapes = self._shapes
        row_events: list | None = None  # described row events of the transaction being read
        txn_thread: int | None = None

        binlog_file = pos.binlog_file
        gtid_state = pos.gtid
        mariadb_state = parse_mariadb_gtid_list(gtid_state) if mariadb else {}
        # the transaction being read: None outside of one
        changes: list[RowChange] | None = None
        txn_gtid: str | None = None
        # inside BEGIN ... COMMIT (MariaDB: a GTID without FL_STANDALONE); else a statement
        # (DDL) is a transaction by itself
        begun = False
        last_yield = monotonic()
        session_ok = False

        # Row events of tables already seen, and their repeated table maps, are read here from the
        # raw packets (see _direct_rows); everything else goes through the library, as do those
        # whenever the library's table map and ours disagree (after a rotate or DDL).
        decoders = self._decoders
        read_packet: Callable[[], Any] | None = None
        checksum_bytes = 0 if (self._info.variables.get("binlog_checksum") or "NONE").upper() == "NONE" else 4

        while not stopping():
            ev: Any = None
            if read_packet is not None:
                pkt = read_packet()
                data = pkt._data
                etype = data[5] if len(data) > 20 and data[0] == 0 else 0
                if etype in _DIRECT_ROWS or etype == TABLE_MAP_EVENT:
                    tid = int.from_bytes(data[20:26], "little")
                    entry = decoders.get(tid)
                    if entry is not None and entry[0] is reader.table_map.get(tid):
                        if etype == TABLE_MAP_EVENT:
                            continue  # the library would skip it too (freeze_schema)
                        ev = _DIRECT
                elif etype == XID_EVENT or etype == MARIADB_GTID_EVENT:
                    ev = _direct_event(data, etype)
                elif etype == MARIADB_ANNOTATE_ROWS_EVENT:
                    continue
                if ev is None:
                    self._stream_conn.unread(pkt)  # type: ignore[union-attr]
            if ev is None:
                ev = fetch()
                if ev is None:
                    raise _StreamLost(ConnectionError("the server ended the binlog stream"))
                if not session_ok:
                    session_ok = self._session_ok = True
                    conn = self._stream_conn
                    if isinstance(conn, _StreamConnection) and self._direct_reading:
                        read_packet = conn._read_packet
            cls = ev.__class__
            end_pos = None  # set when this event commits the transaction

            if cls is _DirectRows or cls is WriteRowsEvent or cls is UpdateRowsEvent or cls is DeleteRowsEvent:
                if changes is None:  # rows outside BEGIN (should not happen with ROW format)
                    changes, txn_gtid, begun = [], None, True
                n0 = len(changes)
                if cls is _DirectRows:
                    tid = self._direct_rows(data, etype, entry[1], len(data) - checksum_bytes, changes)
                    self.direct_row_events += 1
                    header = _HEADER.unpack_from(data, 1) if describe else None
                else:
                    tid = ev.table_id
                    self._decode_rows(ev, changes)
                    p = ev.packet
                    header = (p.timestamp, p.server_id, p.event_size, p.log_pos) if describe else None
                if header is not None:
                    shape = shapes.get(tid)
                    if shape is not None and len(changes) > n0:
                        if row_events is None:
                            row_events = []
                        ts, server_id, size, log_pos = header
                        row_events.append((n0, len(changes), shape, log_pos - size, ts, server_id))
            elif cls is _DirectXid:
                end_pos = ev.log_pos
            elif cls is XidEvent:
                end_pos = ev.packet.log_pos
            elif cls is _DirectMariadbGtid or cls is MariadbGtidEvent or cls is GtidEvent:
                if changes:
                    log.warning("binlog transaction without commit discarded", gtid=txn_gtid, changes=len(changes))
                changes, txn_gtid = [], ev.gtid
                row_events, txn_thread = None, None
                begun = cls is not GtidEvent and not ev.flags & FL_STANDALONE
            elif cls is QueryEvent:
                kind = _query_kind(ev.query)
                if kind is _BEGIN:
                    if changes is None:
                        changes, txn_gtid = [], None
                    begun = True
                    if describe:   # MySQL writes BEGIN with the writer's thread id (source.thread)
                        txn_thread = getattr(ev, "slave_proxy_id", None)
                elif kind is _COMMIT:
                    end_pos = ev.packet.log_pos
                elif kind is _ROLLBACK:
                    if changes:
                        # only groups with non-transactional changes are logged with ROLLBACK
                        log.warning("binlog transaction ended in ROLLBACK; its row changes are dropped",
                                    gtid=txn_gtid, changes=len(changes))
                        changes.clear()
                    row_events = None
                    end_pos = ev.packet.log_pos
                else:
                    if kind is _DDL_STATEMENT:
                        self._on_ddl(ev, binlog_file)
                    elif _DML.match(ev.query):
                        self._on_statement_dml(ev, binlog_file)
                    if not begun:  # a statement on its own (DDL) is a transaction by itself
                        end_pos = ev.packet.log_pos
            elif cls is RotateEvent:
                binlog_file = ev.next_binlog
            elif cls is HeartbeatLogEvent or (cls is NotImplementedEvent
                                              and ev.event_type == HEARTBEAT_LOG_EVENT_V2):
                if self._pending is not None:
                    yield self._take_pending()
                yield None
                last_yield = monotonic()
                continue
            elif cls is XAPrepareEvent:
                # XA: the rows arrive at PREPARE; a later XA ROLLBACK cannot be undone here
                log.warning("XA transaction emitted at XA PREPARE", gtid=txn_gtid)
                end_pos = ev.packet.log_pos
            elif cls is NotImplementedEvent:
                if ev.event_type in _UNREADABLE_EVENTS:
                    raise SourceError(f"the binlog at {binlog_file}:{ev.packet.log_pos} holds "
                                      f"{_UNREADABLE_EVENTS[ev.event_type]}")
            elif cls is PartialUpdateRowsEvent:
                raise SourceError("the server writes partial JSON updates (binlog_row_value_options=PARTIAL_JSON); "
                                  "set binlog_row_value_options='' so row images are complete")

            if end_pos is not None:
                if txn_gtid is not None:
                    if mariadb:
                        g = MariadbGtid.parse(txn_gtid)
                        mariadb_state[g.domain] = g
                        gtid_state = format_mariadb_gtid_list(mariadb_state)
                    else:
                        gtid_state = add_mysql_gtid(gtid_state, txn_gtid)
                position = SourcePosition(gtid_state, binlog_file, end_pos)
                txn = SourceTransaction(gtid=txn_gtid, commit_ts=float(ev.timestamp), position=position,
                                        changes=changes or [],
                                        row_events=RowEvents(txn_thread, row_events) if row_events else None)
                self._position = position
                self.transactions_read += 1
                changes, txn_gtid, begun = None, None, False
                row_events, txn_thread = None, None
                if not txn.changes and coalesce:
                    self._pending = txn
                    if monotonic() - last_yield < hb:
                        continue
                    yield self._take_pending()
                    yield None  # only unmapped traffic for a heartbeat: a tick, as when idle
                else:
                    if self._pending is not None:
                        yield self._take_pending()
                    yield txn
                last_yield = monotonic()
            elif monotonic() - last_yield >= hb:
                # busy, but nothing committed for a while (a long transaction, unmapped traffic)
                if self._pending is not None:
                    yield self._take_pending()
                yield None
                last_yield = monotonic()

    def _mapped_in(self, query: str, schema: str) -> list[str]:
        """Mapped tables a statement seems to name (by table name, in its schema or qualified)."""
        return [name for name, pattern, sch in self._ddl_patterns
                if pattern.search(query) and (sch == schema or re.search(rf"\b{re.escape(sch)}\b", query))]

    def _on_statement_dml(self, ev: QueryEvent, binlog_file: str) -> None:
        # a session with binlog_format=STATEMENT/MIXED wrote SQL instead of rows: not capturable
        query = ev.query.strip()
        schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema or "")
        mapped = self._mapped_in(query, schema)
        if mapped:
            log.error("statement-based change to a mapped table is not captured (the writing session used "
                      "binlog_format=STATEMENT or MIXED)", tables=mapped, query=query[:300],
                      binlog_file=binlog_file, binlog_pos=ev.packet.log_pos)

    def _on_ddl(self, ev: QueryEvent, binlog_file: str) -> None:
        query = ev.query.strip()
        schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema or "")
        mapped = self._mapped_in(query, schema)
        # the next table map of any table is read afresh (new columns, TINYINT(1)/JSON facts)
        if self._reader is not None:
            self._reader.table_map.clear()
        self._decoders.clear()
        self._flags.clear()
        self._shapes.clear()
        self._facts.clear()
        if mapped:
            log.info("ddl on a mapped table", tables=mapped, query=query[:1000], schema=schema,
                     binlog_file=binlog_file, binlog_pos=ev.packet.log_pos)
        else:
            log.debug("ddl", query=query[:200], schema=schema, binlog_file=binlog_file, binlog_pos=ev.packet.log_pos)

    def _decoder(self, ev: Any) -> TableDecoder | None:
        tid = ev.table_id
        table = ev.table_map.get(tid)
        entry = self._decoders.get(tid)
        if entry is not None and entry[0] is table:
            return entry[1]
        if table is None:  # the library returns row events only after their table map
            raise SourceError(f"row event for table id {tid} without a table map")
        name = f"{table.schema}.{table.table}"
        decoder = None
        if name in self._tables:
            decoder = self._build_decoder(name, table)
            if name in self._describe:
                self._shapes[tid] = self._shape(table.schema, table.table, decoder)
        self._decoders[tid] = (table, decoder)
        return decoder

    def _build_decoder(self, name: str, table: Any) -> TableDecoder:
        columns = table.columns
        if any(not c.name for c in columns):
            raise SourceError(f"the binlog has no column names for {name}: set binlog_row_metadata=FULL "
                              f"(events written before that change cannot be decoded by name)")
        bools, jsons = self._schema_flags(table.schema, table.table)
        try:
            specs = [ColumnSpec.from_binlog_column(c, is_bool=c.name in bools, is_json_text=c.name in jsons)
                     for c in columns]
            needed = self._tables[name]
            decoder = TableDecoder(name, specs, None if needed is None else set(needed))
            decoder.plan(b"\xff" * ((len(specs) + 7) // 8))  # build (and validate) the FULL-image plan now
        except UnsupportedColumnError as e:
            raise SourceError(f"{name}: {e}") from e
        if needed is not None:
            missing = sorted(set(needed) - {s.name for s in specs})
            if missing:
                log.warning("mapped columns missing from the table", table=name, missing=missing,
                            columns=[s.name for s in specs])
        log.debug("table map", table=name, table_id=table.table_id, columns=[s.name for s in specs])
        return decoder

    def _schema_flags(self, schema: str, table: str) -> tuple[set[str], set[str]]:
        """TINYINT(1) and MariaDB JSON columns: facts the binlog does not carry. Cached until DDL."""
        key = f"{schema}.{table}"
        cached = self._flags.get(key)
        if cached is not None:
            return cached
        conn = self._meta()
        with conn.cursor() as cur:
            cur.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
            bools = {str(r[0]) for r in cur.fetchall() if is_tinyint1(str(r[1]))}
            jsons: set[str] = set()
            if self._info is not None and self._info.flavor == "mariadb":
                cur.execute("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                            "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
                jsons = json_checked_columns([str(r[0]) for r in cur.fetchall()])
        self._flags[key] = (bools, jsons)
        return bools, jsons

    def _shape(self, schema: str, table: str, decoder: TableDecoder) -> TableShape:
        """The change stream's view of a table: the binlog's column specs plus what only information_schema
        knows (the primary key in index order, nullability, defaults, the spatial subtype). Cached until DDL."""
        key = f"{schema}.{table}"
        facts = self._facts.get(key)
        if facts is None:
            with self._meta().cursor() as cur:
                cur.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                            "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (schema, table))
                pk = tuple(str(r[0]) for r in cur.fetchall())
                cur.execute("SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT, DATA_TYPE FROM "
                            "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
                info = {str(r[0]): (str(r[1]).upper() == "YES", None if r[2] is None else str(r[2]), str(r[3]).lower())
                        for r in cur.fetchall()}
            facts = self._facts[key] = (pk, info)
        return TableShape(key, tuple(decoder.specs), facts[0], facts[1])

    def _decode_rows(self, ev: Any, changes: list[RowChange]) -> None:
        decoder = self._decoder(ev)
        if decoder is None:
            return
        # the row images follow the bitmaps the library has read; decode them from the raw packet
        wrapper = ev.packet
        pkt = wrapper.packet
        off = pkt._position
        self._decode_span(decoder, _OPS[ev.__class__], ev.columns_present_bitmap,
                          getattr(ev, "columns_present_bitmap2", None), pkt._data, off,
                          off + ev.event_size - wrapper.read_bytes, changes)

    def _direct_rows(self, data: bytes, etype: int, decoder: TableDecoder | None, end: int,
                     changes: list[RowChange]) -> int:
        """A row event read from its raw packet (what the library's RowsEvent.__init__ parses, without
        building the event): post-header, column count, present bitmaps, then the images. Returns the
        table id. data: the packet (OK byte, 19-byte event header, body); end: where the images end."""
        op, v2 = _DIRECT_ROWS[etype]
        tid = int.from_bytes(data[20:26], "little")
        if decoder is None:  # a table the library lets through (its name is mapped in another schema)
            return tid
        if len(data) != 1 + int.from_bytes(data[10:14], "little"):
            raise SourceError(f"{decoder.table}: a row event packet does not match its event size")
        # v1: table id (6), flags (2); v2: then the extra data, its 2-byte length included
        off = 28 + int.from_bytes(data[28:30], "little") if v2 else 28
        n = data[off]   # column count, a length-encoded integer
        if n < 251:
            off += 1
        elif n == 252:
            n, off = int.from_bytes(data[off + 1:off + 3], "little"), off + 3
        elif n == 253:
            n, off = int.from_bytes(data[off + 1:off + 4], "little"), off + 4
        else:
            n, off = int.from_bytes(data[off + 1:off + 9], "little"), off + 9
        size = (n + 7) >> 3
        bitmap = data[off:off + size]
        off += size
        bitmap2 = None
        if op == "update":
            bitmap2 = data[off:off + size]
            off += size
        self._decode_span(decoder, op, bitmap, bitmap2, data, off, end, changes)
        return tid

    def _decode_span(self, decoder: TableDecoder, op: str, bitmap: bytes, bitmap2: bytes | None, buf: bytes,
                     off: int, end: int, changes: list[RowChange]) -> None:
        table = decoder.table
        n0 = len(changes)
        try:
            self._decode_images(op, decoder, bitmap, bitmap2, buf, off, end, changes)
        except (ValueError, IndexError, struct.error) as e:   # the native reader's bounds checks, a garbled image
            raise SourceError(f"{table}: a row event could not be decoded ({type(e).__name__}: {e}); the table map "
                              f"does not describe the rows (please report this with the table's DDL)") from e
        self.rows_read += len(changes) - n0

    @staticmethod
    def _decode_images(op: str, decoder: TableDecoder, bitmap: bytes, bitmap2: bytes | None, buf: bytes,
                       off: int, end: int, changes: list[RowChange]) -> None:
        table = decoder.table
        append = changes.append
        read = decoder.plan(bitmap).read
        if op == "insert":
            while off < end:
                row, zeros, off = read(buf, off)
                append(RowChange(table, "insert", None, row, zeros))
        elif op == "update":
            assert bitmap2 is not None
            read_after = decoder.plan(bitmap2).read
            while off < end:
                before, _, off = read(buf, off)
                after, zeros, off = read_after(buf, off)
                append(RowChange(table, "update", before, after, zeros))
        else:
            while off < end:
                row, zeros, off = read(buf, off)
                append(RowChange(table, "delete", row, None, zeros))
        if off != end:
            raise SourceError(f"{table}: a row event decoded to byte {off} but ends at {end}; the table map does "
                              f"not describe the rows (please report this with the table's DDL)")
