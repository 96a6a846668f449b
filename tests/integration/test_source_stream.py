"""BinlogSource against the real MariaDB: transactions, resume, reconnects, DDL, failures.

Each test works in its own database (fresh_db) and uses a random replica server_id: the
server is shared with the other tests, whose transactions show up here as transactions
without changes of our tables.
"""

from __future__ import annotations

import pickle
import socket
import threading
import time
import uuid

import pytest

import cdc_bridge.source.binlog as binlog_module
import cdc_bridge.source.preflight as preflight_module
from cdc_bridge.source import (BinlogSource, MissingPrivilegesError, PositionPurgedError, RowChange,
                               ServerIdConflictError, SourcePosition, SourceTransaction,
                               check_server)
from cdc_bridge.source.gtid import parse_mariadb_gtid_list
from cdc_bridge.source.preflight import current_position
from bridge_harness import connect_db, source_settings


class Collector:
    """Runs source.transactions() in a thread and keeps what it yields, with arrival times."""

    def __init__(self, source: BinlogSource) -> None:
        self.source = source
        self.items: list[tuple[float, SourceTransaction | None]] = []
        self.error: BaseException | None = None
        self.done = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.source.transactions():
                with self.cond:
                    self.items.append((time.monotonic(), item))
                    self.cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def txns(self) -> list[SourceTransaction]:
        with self.cond:
            return [t for _, t in self.items if t is not None]

    def changes(self, table: str) -> list[RowChange]:
        return [c for t in self.txns() for c in t.changes if c.table == table]

    def wait(self, predicate, timeout: float = 15.0, what: str = "condition") -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.done or predicate(), timeout)
        if self.error is not None:
            raise self.error
        assert predicate(), f"timed out waiting for {what}"

    def wait_changes(self, table: str, n: int, timeout: float = 15.0) -> list[RowChange]:
        self.wait(lambda: len(self.changes(table)) >= n, timeout, f"{n} changes of {table}")
        return self.changes(table)

    def stop(self) -> None:
        self.source.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "transactions() did not end after stop()"


make_settings = source_settings
connect = connect_db


@pytest.fixture
def db(admin_db, fresh_db):
    """fresh_db with tables t (mapped in most tests) and u (never mapped)."""
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"CREATE TABLE `{fresh_db}`.u (id INT PRIMARY KEY, v VARCHAR(20))")
    return fresh_db


def write_txn(cur, db: str, ids: list[int], table: str = "t") -> str:
    """One transaction with one INSERT per id; returns its GTID."""
    cur.execute("BEGIN")
    for i in ids:
        cur.execute(f"INSERT INTO `{db}`.{table} VALUES (%s, %s)", (i, f"v{i}"))
    cur.execute("COMMIT")
    cur.execute("SELECT @@last_gtid")
    return cur.fetchone()[0]


def seq(gtid_list: str | None) -> int:
    return max((g.seq for g in parse_mariadb_gtid_list(gtid_list).values()), default=0)


def assert_positions_increase(txns: list[SourceTransaction]) -> None:
    for a, b in zip(txns, txns[1:]):
        assert a.position < b.position, (a.position, b.position)
        assert seq(a.position.gtid) < seq(b.position.gtid)


# ------------------------------------------------------------------ grouping


def test_multi_statement_transaction_is_one_source_transaction(mysql_settings, admin_db, db):
    start = current_position(admin_db)
    collector = Collector(BinlogSource(make_settings(mysql_settings), {f"{db}.t": None}, start=start))
    conn = connect(mysql_settings, db)
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
            cur.execute("UPDATE t SET v = 'A' WHERE id = 1")
            cur.execute("INSERT INTO u VALUES (1, 'unmapped')")
            cur.execute("DELETE FROM t WHERE id = 2")
            cur.execute("INSERT INTO t VALUES (3, 'c')")
            cur.execute("COMMIT")
            cur.execute("SELECT @@last_gtid")
            gtid = cur.fetchone()[0]
        collector.wait_changes(f"{db}.t", 5)
        [txn] = [t for t in collector.txns() if t.changes]
        assert txn.gtid == gtid
        assert [(c.op, c.before, c.after) for c in txn.changes] == [
            ("insert", None, {"id": 1, "v": "a"}),
            ("insert", None, {"id": 2, "v": "b"}),
            ("update", {"id": 1, "v": "a"}, {"id": 1, "v": "A"}),
            ("delete", {"id": 2, "v": "b"}, None),
            ("insert", None, {"id": 3, "v": "c"}),
        ]
        assert gtid in txn.position.gtid.split(",")  # the position is just after this transaction
        assert txn.position > start and abs(txn.commit_ts - time.time()) < 60
    finally:
        conn.close()
        collector.stop()


# ------------------------------------------------------------------ resume


def test_stop_and_resume_reads_each_transaction_once(mysql_settings, admin_db, db):
    table = f"{db}.t"
    settings = make_settings(mysql_settings)
    start = current_position(admin_db)
    first = Collector(BinlogSource(settings, {table: None}, start=start))
    conn = connect(mysql_settings, db)
    try:
        with conn.cursor() as cur:
            for k in range(5):
                write_txn(cur, db, [2 * k + 1, 2 * k + 2])
                if k == 2:
                    cur.execute("FLUSH BINARY LOGS")  # positions continue in the next file
            first.wait_changes(table, 10)
            for k in range(5, 8):  # racing with the stop: the first source gets some or none of these
                write_txn(cur, db, [2 * k + 1, 2 * k + 2])
            first.stop()
            saved = first.txns()[-1].position  # what a pipeline would have checkpointed
            for k in range(8, 10):
                write_txn(cur, db, [2 * k + 1, 2 * k + 2])
        second = Collector(BinlogSource(settings, {table: None}, start=saved))
        try:
            second.wait(lambda: any(c.after["id"] == 20 for c in second.changes(table)), what="id 20")
        finally:
            second.stop()
        ids = [c.after["id"] for c in first.changes(table) + second.changes(table)]
        assert ids == list(range(1, 21))  # every transaction exactly once, in order
        assert all(t.position > saved for t in second.txns())
        assert_positions_increase(first.txns() + second.txns())
        files = [t.position.binlog_file for t in first.txns() if t.changes]
        assert files[0] != files[-1], "FLUSH BINARY LOGS did not show in the positions"
    finally:
        conn.close()


def test_killed_replication_connection_resumes_without_loss_or_duplicates(mysql_settings, admin_db, db):
    table = f"{db}.t"
    reasons: list[str] = []
    source = BinlogSource(make_settings(mysql_settings), {table: None}, start=current_position(admin_db),
                          on_reconnect=reasons.append)
    collector = Collector(source)
    n_txns = 60
    written = threading.Event()

    def writer():
        with connect(mysql_settings, db) as conn, conn.cursor() as cur:
            for k in range(n_txns):
                write_txn(cur, db, [3 * k + 1, 3 * k + 2, 3 * k + 3])
                time.sleep(0.01)
        written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        collector.wait_changes(table, 30)
        cid = source.connection_id
        with admin_db.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            rows = {r[0]: r for r in cur.fetchall()}
            assert cid in rows and rows[cid][4] == "Binlog Dump", rows.get(cid)
            cur.execute(f"KILL {cid}")
        thread.join(30)
        assert written.is_set()
        collector.wait_changes(table, 3 * n_txns, timeout=30)
        time.sleep(0.5)  # anything duplicated would arrive now
        ids = [c.after["id"] for c in collector.changes(table)]
        assert ids == list(range(1, 3 * n_txns + 1))
        mapped = [t for t in collector.txns() if t.changes]
        assert len(mapped) == n_txns and len({t.gtid for t in mapped}) == n_txns
        assert_positions_increase(collector.txns())
        assert source.reconnects >= 1 and reasons and source.connection_id != cid
    finally:
        thread.join(30)
        collector.stop()


class FreezableProxy:
    """A TCP proxy to the server whose open connections can be frozen: bytes stop flowing
    both ways while both sockets stay open, as with a silently dropped network path."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen: list[threading.Event] = []
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            frozen = threading.Event()
            self.frozen.append(frozen)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, frozen), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if not frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        if not frozen.is_set():
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze_open_connections(self) -> None:
        for f in self.frozen:
            f.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_silent_network_drop_is_detected_and_resumed(mysql_settings, admin_db, db):
    """No FIN, no RST, no heartbeats: the read timeout notices, the source resumes exactly."""
    table = f"{db}.t"
    proxy = FreezableProxy(mysql_settings["host"], mysql_settings["port"])
    settings = make_settings(mysql_settings, host="127.0.0.1", port=proxy.port, heartbeat_seconds=0.3,
                             read_timeout_seconds=1.5)
    source = BinlogSource(settings, {table: None}, start=current_position(admin_db))
    collector = Collector(source)
    conn = connect(mysql_settings, db)
    try:
        with conn.cursor() as cur:
            for k in range(5):
                write_txn(cur, db, [2 * k + 1, 2 * k + 2])
            collector.wait_changes(table, 10)
            proxy.freeze_open_connections()
            dropped_at = time.monotonic()
            for k in range(5, 10):
                write_txn(cur, db, [2 * k + 1, 2 * k + 2])
        collector.wait_changes(table, 20, timeout=20)
        detected_after = time.monotonic() - dropped_at
        assert [c.after["id"] for c in collector.changes(table)] == list(range(1, 21))
        assert source.reconnects >= 1 and "timed out" in (source.last_reconnect_reason or "")
        assert detected_after < settings.read_timeout_seconds + 5
    finally:
        conn.close()
        collector.stop()
        proxy.close()


# ------------------------------------------------------------------ schema changes and unmapped tables


def test_alter_mid_stream_add_drop_rename_column(mysql_settings, admin_db, fresh_db):
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.evolving (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
        start = current_position(admin_db)
    table = f"{fresh_db}.evolving"
    collector = Collector(BinlogSource(make_settings(mysql_settings), {table: None}, start=start))
    conn = connect(mysql_settings, fresh_db)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO evolving VALUES (1, 'one', 10)")
            cur.execute("ALTER TABLE evolving ADD COLUMN c DECIMAL(6,2) DEFAULT 1.5")
            cur.execute("INSERT INTO evolving VALUES (2, 'two', 20, 2.25)")
            cur.execute("ALTER TABLE evolving DROP COLUMN b")
            cur.execute("INSERT INTO evolving VALUES (3, 'three', 3.5)")
            cur.execute("ALTER TABLE evolving RENAME COLUMN a TO label")
            cur.execute("INSERT INTO evolving VALUES (4, 'four', 4.75)")
            cur.execute("UPDATE evolving SET label = 'FOUR' WHERE id = 4")
        changes = collector.wait_changes(table, 5)
        assert [c.after for c in changes] == [
            {"id": 1, "a": "one", "b": 10},
            {"id": 2, "a": "two", "b": 20, "c": "2.25"},
            {"id": 3, "a": "three", "c": "3.50"},
            {"id": 4, "label": "four", "c": "4.75"},
            {"id": 4, "label": "FOUR", "c": "4.75"},
        ]
        assert changes[-1].before == {"id": 4, "label": "four", "c": "4.75"}
        # each ALTER is a transaction of its own, without changes
        ddl = [t for t in collector.txns() if not t.changes and t.position > start]
        assert ddl, "the ALTERs moved no position"
    finally:
        conn.close()
        collector.stop()


def test_unmapped_tables_produce_no_changes_but_positions_advance(mysql_settings, admin_db, db):
    start = current_position(admin_db)
    collector = Collector(BinlogSource(make_settings(mysql_settings), {f"{db}.t": None}, start=start))
    conn = connect(mysql_settings, db)
    try:
        with conn.cursor() as cur:
            g1 = write_txn(cur, db, [1, 2], table="u")
            g2 = write_txn(cur, db, [1], table="t")
            g3 = write_txn(cur, db, [3], table="u")
        # the last transaction touches only u: it must still move the position
        collector.wait(lambda: any(seq(t.position.gtid) >= seq(g3) for t in collector.txns()), what=g3)
        txns = [t for t in collector.txns() if t.position > start]
        assert all(c.table == f"{db}.t" for t in txns for c in t.changes)
        [mapped] = [t for t in txns if t.changes]
        assert mapped.gtid == g2 and [c.after for c in mapped.changes] == [{"id": 1, "v": "v1"}]
        before_mapped = [t for t in txns if t.position < mapped.position]
        assert before_mapped and seq(before_mapped[-1].position.gtid) >= seq(g1)
        assert_positions_increase(txns)
        assert seq(collector.source.last_position.gtid) >= seq(g3)
    finally:
        conn.close()
        collector.stop()


# ------------------------------------------------------------------ row events read from raw packets


def read_range(source: BinlogSource, end: SourcePosition) -> list[SourceTransaction]:
    txns = []
    for t in source.transactions():
        if t is not None:
            txns.append(t)
            if t.position.order_key >= end.order_key:
                break
    source.stop()
    return txns


def test_direct_row_events_read_what_the_library_reads(mysql_settings, admin_db, fresh_db, monkeypatch):
    """The source reads the row events of tables it has seen from their raw packets (_direct_rows); a binlog
    with what can make that go wrong is read both ways and must give the same transactions, byte for byte:
    multi-row events, updates, deletes, a value over 64 KiB, a table of 300 columns, a rotate (the library
    forgets its table maps), ALTERs (table ids change), a table the library lets through but nothing maps
    (same name as a mapped table of another schema), and a described table (the change stream)."""
    other = f"{fresh_db}_b"
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{other}`")
    try:
        check_direct_rows_against_the_library(mysql_settings, admin_db, fresh_db, other, monkeypatch)
    finally:
        with admin_db.cursor() as cur:
            cur.execute(f"DROP DATABASE `{other}`")


def check_direct_rows_against_the_library(mysql_settings, admin_db, fresh_db, other, monkeypatch):
    wide_cols = ", ".join(f"c{i} TINYINT" for i in range(300))
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.t (id INT PRIMARY KEY, v VARCHAR(20), doc LONGTEXT)")
        cur.execute(f"CREATE TABLE `{fresh_db}`.u (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute(f"CREATE TABLE `{fresh_db}`.wide (id INT PRIMARY KEY, {wide_cols})")
        cur.execute(f"CREATE TABLE `{other}`.u (id INT PRIMARY KEY, v VARCHAR(20))")
        start = current_position(admin_db)
    conn = connect(mysql_settings, fresh_db)
    try:
        with conn.cursor() as cur:
            for k in range(3):
                base = 100 * k
                cur.execute("BEGIN")
                cur.executemany("INSERT INTO t (id, v) VALUES (%s, %s)", [(base + i, f"v{i}") for i in range(8)])
                cur.execute("UPDATE t SET v = CONCAT(v, '!') WHERE id BETWEEN %s AND %s", (base, base + 3))
                cur.execute("DELETE FROM t WHERE id = %s", (base + 7,))
                cur.execute("INSERT INTO u VALUES (%s, 'not mapped here')", (base,))
                cur.execute(f"INSERT INTO `{other}`.u VALUES (%s, 'mapped')", (base,))
                cur.execute(f"INSERT INTO wide (id, c0, c299) VALUES (%s, 1, 2)", (base,))
                cur.execute("COMMIT")
                if k == 0:
                    cur.execute("UPDATE t SET doc = REPEAT('ß', 40000) WHERE id = 1")
                    cur.execute("FLUSH BINARY LOGS")
                if k == 1:
                    cur.execute("ALTER TABLE t ADD COLUMN n INT DEFAULT 7")
                    cur.execute("ALTER TABLE wide DROP COLUMN c5")
            for i in range(20):   # small transactions: a table map + one row event each
                cur.execute("UPDATE t SET v = %s WHERE id = 1", (f"s{i}",))
        end = current_position(admin_db)
    finally:
        conn.close()

    tables = {f"{fresh_db}.t": None, f"{fresh_db}.wide": {"id", "c0", "c299"}, f"{other}.u": None}

    def read(direct: str) -> tuple[list[SourceTransaction], int]:
        monkeypatch.setenv("CDC_BRIDGE_DIRECT_ROWS", direct)
        source = BinlogSource(make_settings(mysql_settings), tables, start=start, describe=[f"{fresh_db}.t"])
        return read_range(source, end), source.direct_row_events

    library, none_direct = read("0")
    direct, direct_events = read("1")
    assert none_direct == 0 and direct_events >= 20
    changes = [c for t in direct for c in t.changes]
    assert len(changes) == 3 * (8 + 4 + 1 + 1 + 1) + 1 + 20
    assert {c.table for c in changes} == set(tables)
    assert any(c.after and len(c.after.get("doc") or "") == 40000 for c in changes)
    assert [t.position for t in direct] == [t.position for t in library]
    for a, b in zip(direct, library):
        assert (a.gtid, a.commit_ts, a.changes) == (b.gtid, b.commit_ts, b.changes)
        assert pickle.dumps(a.row_events) == pickle.dumps(b.row_events)


# ------------------------------------------------------------------ idle ticks, start=None


def test_idle_ticks_arrive_when_nothing_is_written(mysql_settings, db):
    settings = make_settings(mysql_settings, heartbeat_seconds=0.3, read_timeout_seconds=3)
    source = BinlogSource(settings, {f"{db}.t": None})  # start=None: from now on
    collector = Collector(source)
    try:
        collector.wait(lambda: sum(1 for _, t in collector.items if t is None) >= 6, timeout=10, what="6 ticks")
        times = [ts for ts, t in collector.items]
        assert max(b - a for a, b in zip(times, times[1:])) < 3 * settings.heartbeat_seconds
        # from now on: a write after the start is seen, nothing from before
        with connect(mysql_settings, db) as conn, conn.cursor() as cur:
            write_txn(cur, db, [42])
        assert [c.after["id"] for c in collector.wait_changes(f"{db}.t", 1)] == [42]
    finally:
        collector.stop()
    assert collector.error is None


# ------------------------------------------------------------------ failures


def test_missing_privileges_name_the_grant(mysql_settings, admin_db):
    user = f"cdc_np_{uuid.uuid4().hex[:8]}"
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT SELECT ON *.* TO '{user}'@'127.0.0.1'")
    try:
        settings = make_settings(mysql_settings, user=user, password="pw")
        with pytest.raises(MissingPrivilegesError) as exc:
            check_server(settings)
        assert exc.value.exit_code == 83 and "REPLICATION CLIENT" in exc.value.missing
        assert "GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO" in str(exc.value)
        with admin_db.cursor() as cur:
            cur.execute(f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'")
        with pytest.raises(MissingPrivilegesError) as exc:
            check_server(settings)
        assert exc.value.missing == ["REPLICATION SLAVE"]
    finally:
        with admin_db.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'127.0.0.1'")


def test_server_id_conflict_detected_before_and_while_streaming(mysql_settings, db, monkeypatch):
    settings = make_settings(mysql_settings)
    first = Collector(BinlogSource(settings, {f"{db}.t": None}))
    try:
        first.wait(lambda: any(t is None for _, t in first.items), what="first tick")
        # preflight: SHOW SLAVE HOSTS lists our id
        with pytest.raises(ServerIdConflictError, match=str(settings.server_id)):
            check_server(settings)
        # a second reader that skips that check kicks the first off the server, which then fails
        monkeypatch.setattr(preflight_module, "_check_replica_ids", lambda *a: None)
        second = Collector(BinlogSource(settings, {f"{db}.t": None}))
        try:
            first.wait(lambda: first.done, timeout=10, what="the first source to fail")
        except ServerIdConflictError as e:
            assert e.exit_code == 84 and "source.server_id" in str(e)
        else:
            pytest.fail("the kicked source did not raise ServerIdConflictError")
        second.stop()
    finally:
        first.stop()


def test_purged_position_raises_position_purged(mysql_settings, admin_db, db, monkeypatch):
    """Purging binlogs touches the server all tests share. Why this is safe:

    * FLUSH BINARY LOGS first, so the file holding our old position contains only this
      test's transactions (and the files before it only history that no test still needs:
      every test starts from a position it takes itself, and pytest runs them one by one);
    * PURGE ... TO the then-current file leaves that file and all later ones in place;
    * MariaDB never purges a file an active replication connection is reading; if one is
      (another client streaming old history), the file stays and the test is skipped.
    """
    with admin_db.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        write_txn(cur, db, [1])
        old = current_position(admin_db)
        write_txn(cur, db, [2])  # the transaction after `old`: gone with the purge
        cur.execute("FLUSH BINARY LOGS")
        new_file = current_position(admin_db).binlog_file
        # replication connections waiting at the end of the old file move on to the new one
        # within moments; until they have, the server keeps the file
        deadline = time.monotonic() + 5
        while True:
            cur.execute("PURGE BINARY LOGS TO %s", (new_file,))
            cur.execute("SHOW BINARY LOGS")
            if old.binlog_file not in {r[0] for r in cur.fetchall()}:
                break
            if time.monotonic() > deadline:
                pytest.skip(f"{old.binlog_file} is still being read by another replication client; not purged")
            time.sleep(0.2)

    # found by the preflight check...
    source = BinlogSource(make_settings(mysql_settings), {f"{db}.t": None}, start=old)
    with pytest.raises(PositionPurgedError) as exc:
        next(iter(source.transactions()))
    message = str(exc.value)
    assert exc.value.exit_code == 85 and old.gtid in message
    assert "cdc-bridge snapshot" in message and "when_needed" in message

    # ...and, should the check be passed, by the server's refusal (error 1236)
    monkeypatch.setattr(binlog_module, "position_available", lambda *a, **k: True)
    source = BinlogSource(make_settings(mysql_settings), {f"{db}.t": None}, start=old)
    with pytest.raises(PositionPurgedError, match="1236"):
        for _ in source.transactions():
            pass
    assert source.reconnects == 0


def test_position_without_gtid_is_resumed_through_binlog_gtid_pos(mysql_settings, admin_db, db):
    """A file+offset position (no GTID) still resumes exactly after it on MariaDB."""
    with admin_db.cursor() as cur:
        write_txn(cur, db, [1])
        pos = current_position(admin_db)
        write_txn(cur, db, [2])
    collector = Collector(BinlogSource(make_settings(mysql_settings), {f"{db}.t": None},
                                       start=SourcePosition(None, pos.binlog_file, pos.binlog_pos)))
    try:
        changes = collector.wait_changes(f"{db}.t", 1)
        time.sleep(0.3)
        assert [c.after["id"] for c in collector.changes(f"{db}.t")] == [2]
        assert changes[0].table == f"{db}.t"
    finally:
        collector.stop()
