"""ProcessSource against the real MariaDB: the BinlogSource in a child process.

Each test works in its own database (fresh_db) with a random replica server_id. The server
is shared with other tests (and maybe other sessions): their transactions show up here as
transactions without changes, so assertions only count changes of our own tables.

The reader child is found the way an operator would find it: the process whose command line
is `python -m cdc_bridge.ingest.reader_process FD PARENT_PID`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc_bridge.source import (BinlogSource, PositionPurgedError, ServerIdConflictError, SourceError,
                               SourcePosition, SourceSettings, SourceTransaction)
from cdc_bridge.source.preflight import current_position
from bridge_harness import connect_db, source_settings, wait_for
from cdc_bridge.ingest.reader_process import ProcessSource, ReaderProcessError
from cdc_bridge.mapping.translate import command_to_wire, commands_from_wire

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 15.0
pytestmark = pytest.mark.timeout(60)


def make_settings(mysql_settings: dict, **kw) -> SourceSettings:
    return source_settings(mysql_settings, **{"heartbeat_seconds": 0.3, **kw})


connect = connect_db


# ------------------------------------------------------------------ processes and connections


def reader_pids(parent_pid: int | None = None) -> list[int]:
    """Pids of live (not zombie) `python -m cdc_bridge.ingest.reader_process FD PARENT_PID` processes."""
    parent = str(parent_pid if parent_pid is not None else os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "cdc_bridge.ingest.reader_process" in args and args[-1] == parent and alive(int(entry)):
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie holds no memory, sockets or connections)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_from_proc(pid: int) -> bool:
    """Not even a zombie left: the parent reaped it."""
    return not os.path.exists(f"/proc/{pid}")


def tcp_local_ports(pid: int, remote_port: int) -> set[int]:
    """Local ports of the process's TCP connections to 127.0.0.1:remote_port (from /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return set()
    ports = set()
    for line in lines:
        cols = line.split()
        local, remote, inode = cols[1], cols[2], cols[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port:
            ports.add(int(local.split(":")[1], 16))
    return ports


def binlog_dump_threads(admin_db, ports: set[int] | None = None) -> list[int]:
    """Ids of the server's 'Binlog Dump' threads (those whose client is at one of `ports`)."""
    with admin_db.cursor() as cur:
        cur.execute("SHOW PROCESSLIST")
        rows = cur.fetchall()
    return [r[0] for r in rows if r[4] == "Binlog Dump"
            and (ports is None or r[2].rpartition(":")[2].isdigit() and int(r[2].rpartition(":")[2]) in ports)]


def replica_server_ids(admin_db) -> set[int]:
    with admin_db.cursor() as cur:
        cur.execute("SHOW SLAVE HOSTS")
        return {int(r[0]) for r in cur.fetchall()}


def dump_thread_of(admin_db, pid: int, port: int, timeout: float = DEADLINE) -> int:
    [tid] = wait_for(lambda: binlog_dump_threads(admin_db, tcp_local_ports(pid, port)), timeout,
                     f"the Binlog Dump thread of reader {pid}")
    return tid


# ------------------------------------------------------------------ reading


def next_item(it: Iterator[SourceTransaction | None]) -> SourceTransaction | None:
    """One item; both readers yield at least an idle tick every heartbeat (ProcessSource: every
    0.2 s), so a hang shows up as the module's pytest timeout."""
    return next(it)


def read_until(it: Iterator[SourceTransaction | None], done: Callable[[list[SourceTransaction]], bool],
               timeout: float = DEADLINE) -> list[SourceTransaction]:
    """Transactions (idle ticks dropped) until done(transactions so far) holds."""
    got: list[SourceTransaction] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        assert time.monotonic() < deadline, f"timed out after {timeout}s; read {len(got)} transactions"
        item = next_item(it)
        if item is not None:
            got.append(item)
    return got


def read_range(source, end: SourcePosition) -> list[SourceTransaction]:
    """A new source's transactions until its position reaches `end`; the source is stopped after."""
    it = source.transactions()
    try:
        return read_until(it, lambda _: source.last_position is not None and source.last_position >= end)
    finally:
        it.close()


def mapped(txns: list[SourceTransaction], db: str) -> list[SourceTransaction]:
    return [t for t in txns if any(c.table.startswith(db + ".") for c in t.changes)]


def n_changes(txns: list[SourceTransaction], db: str) -> int:
    return sum(1 for t in txns for c in t.changes if c.table.startswith(db + "."))


@pytest.fixture
def db(admin_db, fresh_db):
    """fresh_db with tables t (mapped) and u (unmapped)."""
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.t (id INT PRIMARY KEY, v VARCHAR(40))")
        cur.execute(f"CREATE TABLE `{fresh_db}`.u (id INT PRIMARY KEY, v VARCHAR(40))")
    return fresh_db


def write_txns(mysql_settings: dict, db: str, ids: range, per_txn: int = 1, table: str = "t") -> None:
    with connect(mysql_settings, db) as conn, conn.cursor() as cur:
        batch = list(ids)
        for k in range(0, len(batch), per_txn):
            cur.execute("BEGIN")
            for i in batch[k:k + per_txn]:
                cur.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, f"v{i}"))
            cur.execute("COMMIT")


# ------------------------------------------------------------------ same transactions as inline


def test_process_reader_yields_the_same_transactions_as_inline_reader(mysql_settings, admin_db, fresh_db):
    """Over one binlog range (3 tables, ~400 row changes incl. non-ASCII text and DECIMAL),
    ProcessSource yields exactly BinlogSource's mapped transactions: gtid, position, commit_ts, changes."""
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.customers (id INT PRIMARY KEY, name VARCHAR(100), "
                    "balance DECIMAL(12,4)) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{fresh_db}`.orders (id BIGINT PRIMARY KEY, customer INT, note TEXT, "
                    "total DECIMAL(30,10), placed DATETIME(6)) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{fresh_db}`.tags (k VARCHAR(32) PRIMARY KEY, qty INT, ratio DECIMAL(5,3)) "
                    "DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{fresh_db}`.noise (id INT PRIMARY KEY, v VARCHAR(10))")
    start = current_position(admin_db)
    names = ["Zoë Ångström", "Łukasz Żółć", "田中 太郎", "Ἀθηνᾶ", "emoji 😀🚀", "plain"]
    rng = random.Random(7)
    with connect(mysql_settings, fresh_db) as conn, conn.cursor() as cur:
        for k in range(30):
            cur.execute("BEGIN")
            for j in range(5):
                cid = k * 5 + j
                cur.execute("INSERT INTO customers VALUES (%s, %s, %s)",
                            (cid, f"{names[cid % len(names)]} #{cid}", Decimal(rng.randint(-10**7, 10**7)) / 10000))
                cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, NOW(6))",
                            (10**12 + cid, cid, f"note ✓ {cid} «{names[(cid + 1) % len(names)]}»",
                             Decimal(f"{rng.randint(0, 10**19)}.{rng.randint(0, 10**10 - 1):010d}")))
            cur.execute("INSERT INTO tags VALUES (%s, %s, %s)", (f"tag-ä-{k}", k, Decimal(k) / 7))
            cur.execute("INSERT INTO noise VALUES (%s, 'x')", (k,))  # unmapped table in a mapped transaction
            if k % 3 == 0:
                cur.execute("UPDATE customers SET balance = balance * -1, name = CONCAT(name, ' ✔') "
                            "WHERE id BETWEEN %s AND %s", (k * 5, k * 5 + 2))
            if k % 5 == 4:
                cur.execute("DELETE FROM orders WHERE id = %s", (10**12 + k * 5,))
            cur.execute("COMMIT")
            if k % 10 == 9:
                cur.execute("INSERT INTO noise VALUES (%s, 'y')", (1000 + k,))  # an unmapped transaction
    end = current_position(admin_db)
    tables = {f"{fresh_db}.customers": None, f"{fresh_db}.orders": None, f"{fresh_db}.tags": {"k", "ratio"}}

    inline_src = BinlogSource(make_settings(mysql_settings), tables, start=start)
    proc_src = ProcessSource(make_settings(mysql_settings), tables, start=start, log_level="WARNING")
    inline, proc = ([t for t in read_range(src, end) if t.changes and t.position <= end]
                    for src in (inline_src, proc_src))

    expected_changes = 30 * (5 + 5 + 1) + 10 * 3 + 6  # inserts, updates, deletes
    assert n_changes(inline, fresh_db) == expected_changes
    assert len(inline) == 30
    assert proc == inline  # dataclass equality: gtid, commit_ts, position, every change (table, op, before, after)
    values = [c.after for t in proc for c in t.changes if c.after]
    assert any(v.get("name") == "田中 太郎 #2" for v in values)
    assert any("😀" in (v.get("name") or "") for v in values)
    assert any(isinstance(v.get("total"), str) and "." in v["total"] for v in values)  # DECIMAL as exact text
    assert all(set(c.after or c.before) == {"k", "ratio"} for t in proc for c in t.changes
               if c.table.endswith(".tags"))  # column selection holds in the child too
    assert proc_src.last_position >= end and proc_src.transactions_read >= len(proc)


# ------------------------------------------------------------------ has_more


def test_has_more_true_while_transactions_wait_false_once_caught_up(mysql_settings, admin_db, db):
    start = current_position(admin_db)
    write_txns(mysql_settings, db, range(1, 41))  # a burst of 40 transactions, all in the binlog already
    source = ProcessSource(make_settings(mysql_settings), {f"{db}.t": None}, start=start, log_level="WARNING")
    assert not source.has_more()  # not started: nothing waits
    it = source.transactions()
    try:
        first = read_until(it, lambda got: len(mapped(got, db)) >= 1)
        # the reader is ahead: the other 39 are read and on their way
        wait_for(source.has_more, 5, "has_more() while 39 transactions wait")
        assert source.has_more()  # asking does not consume anything
        rest = read_until(it, lambda got: n_changes(first + got, db) >= 40)
        ids = [c.after["id"] for t in first + rest for c in t.changes]
        assert ids == list(range(1, 41))

        def caught_up() -> bool:
            # only other sessions' transactions (no changes of ours) may still be arriving
            if not source.has_more():
                return True
            item = next_item(it)
            assert item is not None, "has_more() said True, but what was waiting was an idle tick"
            assert not mapped([item], db)
            return False

        wait_for(caught_up, 5, "has_more() False once caught up", interval=0)
        # caught up and idle: heartbeats make the reader send idle ticks; waiting ticks are not
        # "more" (the pipeline must commit its batch now, not wait for the next transaction)
        for _ in range(2):
            time.sleep(0.8)  # > 2 heartbeats: ticks are waiting in the socket
            more = source.has_more()
            item = next_item(it)
            assert not (more and item is None), "has_more() was True with only idle ticks waiting"
            if item is not None:
                assert not mapped([item], db)
        write_txns(mysql_settings, db, range(41, 42))
        wait_for(source.has_more, 5, "has_more() after a new write")
        assert [c.after["id"] for c in read_until(it, lambda got: bool(mapped(got, db)))[-1].changes] == [41]
    finally:
        it.close()


# ------------------------------------------------------------------ stop, close, kill


def test_stop_from_another_thread_ends_iteration_and_reaps_child(mysql_settings, admin_db, db):
    source = ProcessSource(make_settings(mysql_settings), {f"{db}.t": None}, start=current_position(admin_db),
                           log_level="WARNING")
    items: list[SourceTransaction | None] = []
    errors: list[BaseException] = []

    def consume():
        try:
            for item in source.transactions():
                items.append(item)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        [pid] = wait_for(reader_pids, 10, "the reader process")
        write_txns(mysql_settings, db, range(1, 3))
        wait_for(lambda: n_changes([t for t in items if t], db) == 2, 10, "2 changes through the child")
        t0 = time.monotonic()
        source.stop()
        thread.join(5)
        elapsed = time.monotonic() - t0
    finally:
        source.stop()
        thread.join(10)
    assert not thread.is_alive() and not errors, errors
    assert elapsed < 2.0, f"transactions() took {elapsed:.2f}s to end after stop()"
    assert gone_from_proc(pid), f"reader {pid} still exists after transactions() ended"
    assert source.stopped and reader_pids() == []


def test_breaking_out_of_the_loop_reaps_child(mysql_settings, admin_db, db):
    start = current_position(admin_db)
    # enough waiting data that the child is still busy sending when we leave
    write_txns(mysql_settings, db, range(1, 301), per_txn=2)
    source = ProcessSource(make_settings(mysql_settings), {f"{db}.t": None}, start=start, log_level="WARNING")
    pid = None
    t0 = None
    for item in source.transactions():
        if pid is None:
            [pid] = reader_pids()
        if item is not None and mapped([item], db):
            t0 = time.monotonic()
            break  # the generator is closed right here (CPython refcounting)
    assert pid is not None and t0 is not None
    assert gone_from_proc(pid), f"reader {pid} still exists after the loop was left"
    assert time.monotonic() - t0 < 2.0
    assert reader_pids() == []


def test_child_killed_mid_stream_raises_reader_process_error(mysql_settings, admin_db, db):
    source = ProcessSource(make_settings(mysql_settings), {f"{db}.t": None}, start=current_position(admin_db),
                           log_level="WARNING")
    it = source.transactions()
    try:
        write_txns(mysql_settings, db, range(1, 6))
        got = read_until(it, lambda g: n_changes(g, db) >= 5)
        [pid] = reader_pids()
        stop_writing = threading.Event()

        def writer():  # the stream keeps flowing while the reader dies
            with connect(mysql_settings, db) as conn, conn.cursor() as cur:
                i = 100
                while not stop_writing.is_set():
                    cur.execute("INSERT INTO t VALUES (%s, 'w')", (i,))
                    i += 1
                    time.sleep(0.005)

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        try:
            read_until(it, lambda g: n_changes(g, db) >= 5)  # streaming again
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ReaderProcessError) as exc:
                read_until(it, lambda g: False)
        finally:
            stop_writing.set()
            w.join(5)
    finally:
        it.close()
    assert isinstance(exc.value, SourceError) and exc.value.exit_code == 80
    assert "exit status -9" in str(exc.value)  # Popen's returncode for "killed by SIGKILL"
    assert gone_from_proc(pid)
    assert got[-1].position <= source.last_position


# ------------------------------------------------------------------ errors keep their class


def test_nonexistent_start_position_raises_position_purged_in_parent(mysql_settings, admin_db, db):
    """BINLOG_GTID_POS() cannot map a file that never existed: the child's PositionPurgedError
    reaches the parent as that class, exit code 85, with the message the inline reader gives."""
    bogus = SourcePosition(gtid=None, binlog_file="mysql-bin.999999", binlog_pos=4)
    settings = make_settings(mysql_settings)
    with pytest.raises(PositionPurgedError) as inline:
        next(iter(BinlogSource(settings, {f"{db}.t": None}, start=bogus).transactions()))
    source = ProcessSource(settings, {f"{db}.t": None}, start=bogus, log_level="CRITICAL")
    t0 = time.monotonic()
    with pytest.raises(PositionPurgedError) as exc:
        read_until(source.transactions(), lambda g: False)
    assert type(exc.value) is PositionPurgedError
    assert exc.value.exit_code == 85 == inline.value.exit_code
    assert str(exc.value) == str(inline.value) and "mysql-bin.999999" in str(exc.value)
    assert time.monotonic() - t0 < 5
    assert reader_pids() == []


def test_server_id_conflict_in_child_raises_server_id_conflict_in_parent(mysql_settings, db):
    settings = make_settings(mysql_settings)
    holder = BinlogSource(settings, {f"{db}.t": None})  # another replica with our server_id
    holder_it = holder.transactions()
    try:
        next_item(holder_it)  # connected and streaming (registered in SHOW SLAVE HOSTS)
        source = ProcessSource(settings, {f"{db}.t": None}, log_level="CRITICAL")
        with pytest.raises(ServerIdConflictError) as exc:
            read_until(source.transactions(), lambda g: False)
    finally:
        holder_it.close()
    assert type(exc.value) is ServerIdConflictError and exc.value.exit_code == 84
    assert str(settings.server_id) in str(exc.value) and "source.server_id" in str(exc.value)


# ------------------------------------------------------------------ reconnect


def test_on_reconnect_called_in_parent_when_child_connection_is_killed(mysql_settings, admin_db, db):
    reasons: list[tuple[str, int]] = []
    source = ProcessSource(make_settings(mysql_settings), {f"{db}.t": None}, start=current_position(admin_db),
                           log_level="CRITICAL")
    source.on_reconnect = lambda reason: reasons.append((reason, threading.get_ident()))
    it = source.transactions()
    try:
        write_txns(mysql_settings, db, range(1, 4))
        read_until(it, lambda g: n_changes(g, db) >= 3)
        [pid] = reader_pids()
        tid = dump_thread_of(admin_db, pid, mysql_settings["port"])
        with admin_db.cursor() as cur:
            cur.execute(f"KILL {tid}")
        write_txns(mysql_settings, db, range(4, 7))
        after = read_until(it, lambda g: n_changes(g, db) >= 3 and bool(reasons))
    finally:
        it.close()
    [(reason, thread_id)] = reasons
    assert reason and thread_id == threading.get_ident()  # in the parent, in the iterating thread
    assert source.reconnects == 1
    assert [c.after["id"] for t in after for c in t.changes] == [4, 5, 6]  # resumed: no loss, no duplicate


# ------------------------------------------------------------------ parent death


PARENT_SCRIPT = textwrap.dedent("""
    import json, sys
    from cdc_bridge.source import SourceSettings
    from cdc_bridge.ingest.reader_process import ProcessSource

    settings = SourceSettings(**json.loads(sys.argv[1]))
    source = ProcessSource(settings, {sys.argv[2]: None}, log_level="WARNING")
    for item in source.transactions():
        print("item", flush=True)
""")


@contextlib.contextmanager
def parent_script(text: str, mysql_settings: dict, db: str, tmp_path: Path, **popen: Any):
    """A process running `text` (its argv: the source settings as JSON, the table): (the process, its
    settings); afterwards it and its reader are gone, and its stderr (parent.log) holds no traceback."""
    settings = make_settings(mysql_settings)
    spec = {k: v for k, v in mysql_settings.items()}
    spec.update(server_id=settings.server_id, heartbeat_seconds=0.3, read_timeout_seconds=5)
    script = tmp_path / "parent.py"
    script.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(tmp_path / "parent.log", "wb") as log_file:
        parent = subprocess.Popen([sys.executable, str(script), json.dumps(spec), f"{db}.t"], cwd=ROOT, env=env,
                                  stderr=log_file, **popen)
    try:
        yield parent, settings
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in reader_pids(parent.pid):
            os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in (tmp_path / "parent.log").read_text()


def test_child_dies_when_parent_is_sigkilled(mysql_settings, admin_db, db, tmp_path):
    with parent_script(PARENT_SCRIPT, mysql_settings, db, tmp_path, stdout=subprocess.DEVNULL) as (parent, settings):
        [child] = wait_for(lambda: reader_pids(parent.pid), 10, "the reader process of the parent script")
        tid = dump_thread_of(admin_db, child, mysql_settings["port"])
        assert settings.server_id in replica_server_ids(admin_db)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        wait_for(lambda: not alive(child), 3, f"reader {child} to die with its parent")
        wait_for(lambda: tid not in binlog_dump_threads(admin_db), 5,
                 f"the server to drop Binlog Dump thread {tid}")
        wait_for(lambda: settings.server_id not in replica_server_ids(admin_db), 5,
                 f"server_id {settings.server_id} to leave SHOW SLAVE HOSTS")


GROUP_SIGNAL_SCRIPT = textwrap.dedent("""
    import json, signal, sys
    from cdc_bridge.source import SourceSettings
    from cdc_bridge.ingest.reader_process import ProcessSource

    signal.signal(signal.SIGHUP, lambda *_: print("hup", flush=True))  # the bridge handles it: a reload
    settings = SourceSettings(**json.loads(sys.argv[1]))
    print("spawning", flush=True)
    source = ProcessSource(settings, {sys.argv[2]: None}, log_level="WARNING")
    for item in source.transactions():
        if item is not None:
            print("item", flush=True)
""")


def test_signals_to_the_bridges_process_group_do_not_kill_the_reader(mysql_settings, db, tmp_path):
    """`kill -HUP -PGID` (or a terminal's hangup) reaches the whole process group. The reader must
    not die of it while it starts (before it can ignore the signal): the parent reloads, the reader
    reads on. CI caught this as a BrokenPipeError in `run` when a SIGHUP met the reader's start."""
    out = tmp_path / "parent.out"
    with open(out, "wb") as out_file, \
            parent_script(GROUP_SIGNAL_SCRIPT, mysql_settings, db, tmp_path, stdout=out_file,
                          start_new_session=True) as (parent, _):
        wait_for(lambda: b"spawning" in out.read_bytes(), 10, "the parent script to spawn its reader")
        deadline = time.monotonic() + 2.0  # a SIGHUP to the group every 5 ms through the reader's start-up
        while time.monotonic() < deadline and parent.poll() is None:
            os.killpg(parent.pid, signal.SIGHUP)
            time.sleep(0.005)
        [child] = wait_for(lambda: reader_pids(parent.pid), 10, "the reader process of the parent script")
        write_txns(mysql_settings, db, range(1, 3))
        wait_for(lambda: out.read_bytes().count(b"item") >= 2 or parent.poll() is not None, 10,
                 "2 transactions through the reader")
        assert parent.poll() is None, (tmp_path / "parent.log").read_text()
        assert alive(child)
        assert out.read_bytes().count(b"hup") > 10  # the parent got the signals


# ------------------------------------------------------------------ translation in the reader process


def test_process_reader_translates_like_the_pipeline(mysql_settings, admin_db, fresh_db, tmp_path):
    """With a MappingSet, the child translates: each transaction arrives with the commands and dead
    letters that MappingSet.translate gives for the inline reader's same transaction (soft delete,
    re-parenting, a coercion failure and an unmapped table included), and with its row counts."""
    from cdc_bridge.mapping.loader import load_mappings

    with admin_db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{fresh_db}`.orders (id INT PRIMARY KEY, status VARCHAR(20), "
                    "total DECIMAL(12,2), deleted_at DATETIME NULL) DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{fresh_db}`.order_lines (id INT PRIMARY KEY, order_id INT, qty VARCHAR(10)) "
                    "DEFAULT CHARSET=utf8mb4")
        cur.execute(f"CREATE TABLE `{fresh_db}`.noise (id INT PRIMARY KEY)")
    (tmp_path / "orders.yaml").write_text(textwrap.dedent(f"""\
        aggregate: Order
        topic: t.order.events
        root:
          table: {fresh_db}.orders
          id: id
          fields: {{id: , status: , total: {{type: decimal}}}}
          where: {{deleted_at: null}}
        children:
          - name: lines
            table: {fresh_db}.order_lines
            id: id
            parent_key: order_id
            fields: {{id: , qty: {{type: int}}}}
        """))
    mappings = load_mappings(tmp_path)
    start = current_position(admin_db)
    with connect(mysql_settings, fresh_db) as conn, conn.cursor() as cur:
        for k in range(20):
            cur.execute("BEGIN")
            cur.execute("INSERT INTO order_lines VALUES (%s, %s, %s)", (k * 10, k, "abc" if k % 7 == 3 else str(k)))
            cur.execute("INSERT INTO orders VALUES (%s, 'pending', %s, NULL)", (k, Decimal(k) / 4))
            cur.execute("INSERT INTO order_lines VALUES (%s, %s, '2')", (k * 10 + 1, k))
            cur.execute("INSERT INTO noise VALUES (%s)", (k,))
            if k % 4 == 1:
                cur.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (k,))
                cur.execute("UPDATE order_lines SET order_id = %s WHERE id = %s", (k - 1, k * 10 + 1))  # moved
            if k % 5 == 2:
                cur.execute("UPDATE orders SET deleted_at = NOW() WHERE id = %s", (k,))  # soft delete
            cur.execute("COMMIT")
    end = current_position(admin_db)
    tables = mappings.tables_and_columns()

    inline_src = BinlogSource(make_settings(mysql_settings), tables, start=start)
    proc_src = ProcessSource(make_settings(mysql_settings), tables, start=start, log_level="WARNING",
                             mappings=mappings)
    inline, proc = ([t for t in read_range(src, end) if t.position <= end and t.rows_by_table()]
                    for src in (inline_src, proc_src))
    assert len(inline) == len(proc) == 20
    dead_total = 0
    for a, b in zip(inline, proc):
        commands, dead = mappings.translate(a)
        assert (b.gtid, b.commit_ts, b.position, b.txn_id) == (a.gtid, a.commit_ts, a.position, a.txn_id)
        assert b.changes == [] and b.rows_by_table() == a.rows_by_table() and b.row_count == len(a.changes)
        assert b.commands is None   # no Command objects: the wire form, which says the same
        assert b.wire == [command_to_wire(c) for c in commands]
        assert commands_from_wire(b.wire, b.position, b.txn_id, b.commit_ts) == commands
        assert [d.model_dump() for d in b.dead_letters or []] == [d.model_dump() for d in dead]
        dead_total += len(dead)
        for w in b.wire:   # a delete's payload and before stay one dict (Command is frozen)
            if w[5] == "delete":
                assert w[7] is w[6]
    assert dead_total == 3   # "abc" is no int: k = 3, 10, 17
    ops = [w[5] for t in proc for w in t.wire]
    assert ops.count("delete") >= 4 + 5   # re-parented lines (delete + insert) and soft deletes
