"""Shared by the benchmarks (bench_source.py, run.py, child.py).

* run_plain / run_source: read one binlog range with a plain python-mysql-replication loop
  and with BinlogSource (moved here from bench_source.py, unchanged).
* BatchedMonolith: devenv/monolith.py's workload (same tables, same SQL shapes, the same
  mix of actions, children before parents) in fast batched form: every action touches
  `batch` orders or lines in one transaction, with multi-row INSERTs and `WHERE id IN (...)`.
* small helpers: connection settings, a fresh database, /proc/self/status memory figures.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402
from pymysqlreplication import BinLogStreamReader  # noqa: E402
from pymysqlreplication.event import MariadbGtidEvent, XidEvent  # noqa: E402
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent  # noqa: E402

from cdc_bridge.source import BinlogSource, SourcePosition, SourceSettings  # noqa: E402
from cdc_bridge.source.gtid import parse_mariadb_gtid_list  # noqa: E402
from devenv.monolith import TRANSITIONS, MonolithWriter, create_schema, pick_step  # noqa: E402

RESULTS = ROOT / "bench" / "results"


# --------------------------------------------------------------------------- binlog readers


def end_gtid_reached(gtid_list: str | None, end: dict) -> bool:
    have = parse_mariadb_gtid_list(gtid_list)
    return all(d in have and have[d].seq >= g.seq for d, g in end.items())


def run_plain(conn_settings: dict, db: str, start: SourcePosition, end_gtid: str) -> tuple[int, float]:
    """(a) BinLogStreamReader over [start, end_gtid]: `for ev in stream: for row in ev.rows: pass`."""
    end = parse_mariadb_gtid_list(end_gtid)
    last = max(end.values(), key=lambda g: g.seq)
    t0 = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings=dict(conn_settings), server_id=random.randint(100_000, 200_000),
        is_mariadb=True, auto_position=start.gtid, blocking=True, only_schemas=[db],
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, MariadbGtidEvent, XidEvent])
    rows = 0
    seen_last = False
    try:
        for ev in stream:
            if isinstance(ev, MariadbGtidEvent):
                seen_last = ev.gtid == str(last)
                continue
            if isinstance(ev, XidEvent):
                if seen_last:
                    break
                continue
            for _row in ev.rows:
                rows += 1
    finally:
        stream.close()
    return rows, time.perf_counter() - t0


def run_source(settings: SourceSettings, db: str, start: SourcePosition, end_gtid: str,
               tables: tuple[str, ...] = ("orders", "order_lines")) -> tuple[int, float]:
    """(b) BinlogSource.transactions() over the same range: fully normalized RowChanges."""
    end = parse_mariadb_gtid_list(end_gtid)
    t0 = time.perf_counter()
    source = BinlogSource(settings, {f"{db}.{t}": None for t in tables}, start=start)
    rows = 0
    for txn in source.transactions():
        if txn is None:
            continue
        rows += len(txn.changes)
        if end_gtid_reached(txn.position.gtid, end):
            break
    elapsed = time.perf_counter() - t0
    source.stop()
    return rows, elapsed


# --------------------------------------------------------------------------- database


def connect(conn_settings: dict, **kw: Any) -> pymysql.connections.Connection:
    return pymysql.connect(**conn_settings, autocommit=True, charset="utf8mb4", **kw)


def fresh_orders_database(conn: pymysql.connections.Connection, db: str) -> None:
    """DROP + create `db` with mappings/schema.sql (the monolith's tables)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    create_schema(conn, db)


def drop_database(conn_settings: dict, db: str) -> None:
    with connect(conn_settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


# --------------------------------------------------------------------------- workload


class IndexedSet:
    """Ids with O(1) add, remove and random sampling."""

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, x: int) -> bool:
        return x in self.pos

    def add(self, x: int) -> None:
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def discard(self, x: int) -> None:
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def sample(self, rng: random.Random, k: int) -> list[int]:
        return rng.sample(self.items, min(k, len(self.items)))


@dataclass
class TxnRecord:
    gtid: str | None
    committed_at: float      # time.time() right after COMMIT returned
    rows: int


# MonolithWriter's actions -> BatchedMonolith's batched versions
_BATCHED = {
    "place_order": "place_orders", "lines_before_order": "lines_before_orders", "late_order": "late_orders",
    "change_status": "change_status", "touch_unmapped": "touch_unmapped", "change_line": "change_lines",
    "delete_line": "delete_lines", "delete_order": "delete_orders", "soft_delete_order": "soft_delete_orders",
}


@dataclass
class BatchedMonolith(MonolithWriter):
    """devenv.monolith.MonolithWriter's actions, each on `batch` orders/lines in ONE transaction.

    Same SQL shapes (the writer's INSERT column lists, `UPDATE ... SET status=`, `SET note=`,
    `quantity=quantity+1`, soft delete `deleted_at=NOW()`, hard delete lines then order),
    same action mix (step()'s weights), lines written before their order in an earlier
    transaction. `rows` counts the row changes the server reported (= binlog rows).
    record_txns: keep (GTID, wall time after COMMIT, rows) per transaction (latency runs).
    """

    batch: int = 20
    record_txns: bool = False
    rows: int = 0
    txns: list[TxnRecord] = field(default_factory=list)
    live: IndexedSet = field(default_factory=IndexedSet)          # orders in the bridge's view
    movable: IndexedSet = field(default_factory=IndexedSet)       # live orders with a next status
    all_lines: IndexedSet = field(default_factory=IndexedSet)     # every line in the database
    live_lines: IndexedSet = field(default_factory=IndexedSet)    # lines of live orders
    lines_of: dict[int, list[int]] = field(default_factory=dict)  # order id -> its line ids
    early: list[int] = field(default_factory=list)                # orders whose lines exist, the order not yet

    def _txn(self, statements: list[tuple[str, Any]]) -> None:
        n = 0
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            for sql, args in statements:
                n += (cur.executemany(sql, args) if isinstance(args, list) else cur.execute(sql, args)) or 0
            cur.execute("COMMIT")
            if self.record_txns:
                t = time.time()
                cur.execute("SELECT @@last_gtid")
                gtid = cur.fetchone()[0] or None
                self.txns.append(TxnRecord(gtid, t, n))
        self.rows += n

    @staticmethod
    def _in(ids: list[int]) -> str:
        return ",".join(str(int(i)) for i in ids)

    def _new_lines(self, oid: int, n: int, live: bool) -> list[tuple]:
        rows = self._line_rows(oid, n)
        lids = self.lines_of.setdefault(oid, [])
        for r in rows:
            lids.append(r[0])
            self.all_lines.add(r[0])
            if live:
                self.live_lines.add(r[0])
        return rows

    def _order_is_live(self, oid: int) -> None:
        self.orders[oid] = "pending"
        self.live.add(oid)
        self.movable.add(oid)
        for lid in self.lines_of.get(oid, ()):
            self.live_lines.add(lid)

    def _order_leaves(self, oid: int) -> None:
        self.orders.pop(oid, None)
        self.live.discard(oid)
        self.movable.discard(oid)
        for lid in self.lines_of.get(oid, ()):
            self.live_lines.discard(lid)

    # -- the monolith's actions, batched

    def place_orders(self) -> None:
        orders, lines = [], []
        for _ in range(self.batch):
            oid = self.next_order_id
            self.next_order_id += 1
            orders.append((oid, self.rng.randint(1, 1000), f"{self.rng.randint(100, 99999) / 100:.2f}"))
            lines.extend(self._new_lines(oid, self.rng.randint(1, 4), live=True))
        self._txn([(self._insert_order(), orders), (self._insert_lines(), lines)])
        for o in orders:
            self._order_is_live(o[0])

    def lines_before_orders(self) -> None:
        lines = []
        for _ in range(max(1, self.batch // 2)):
            oid = self.next_order_id
            self.next_order_id += 1
            lines.extend(self._new_lines(oid, self.rng.randint(1, 3), live=False))
            self.early.append(oid)
        self._txn([(self._insert_lines(), lines)])

    def late_orders(self) -> None:
        take, self.early = self.early[: self.batch], self.early[self.batch:]
        if not take:
            return
        self._txn([(self._insert_order(), [(oid, self.rng.randint(1, 1000), "10.00") for oid in take])])
        for oid in take:
            self._order_is_live(oid)

    def change_status(self) -> None:
        by_status: dict[str, list[int]] = {}
        for oid in self.movable.sample(self.rng, self.batch):
            new = self.rng.choice(TRANSITIONS[self.orders[oid]])
            by_status.setdefault(new, []).append(oid)
        if not by_status:
            return
        self._txn([(f"UPDATE {self._q('orders')} SET status=%s WHERE id IN ({self._in(ids)})", (new,))
                   for new, ids in sorted(by_status.items())])
        for new, ids in by_status.items():
            for oid in ids:
                self.orders[oid] = new
                if not TRANSITIONS[new]:
                    self.movable.discard(oid)

    def touch_unmapped(self) -> None:
        ids = self.live.sample(self.rng, self.batch)
        if ids:
            self._txn([(f"UPDATE {self._q('orders')} SET note=%s WHERE id IN ({self._in(ids)})",
                        (f"note {self.rng.random()}",))])

    def change_lines(self) -> None:
        ids = self.all_lines.sample(self.rng, self.batch)
        if ids:
            self._txn([(f"UPDATE {self._q('order_lines')} SET quantity=quantity+1 WHERE id IN ({self._in(ids)})", None)])

    def delete_lines(self) -> None:
        ids = self.live_lines.sample(self.rng, self.batch)
        if not ids:
            return
        self._txn([(f"DELETE FROM {self._q('order_lines')} WHERE id IN ({self._in(ids)})", None)])
        for lid in ids:
            oid = self.lines.pop(lid)
            self.all_lines.discard(lid)
            self.live_lines.discard(lid)
            self.lines_of[oid].remove(lid)

    def delete_orders(self) -> None:
        ids = self.live.sample(self.rng, max(1, self.batch // 2))
        if not ids:
            return
        self._txn([(f"DELETE FROM {self._q('order_lines')} WHERE order_id IN ({self._in(ids)})", None),
                   (f"DELETE FROM {self._q('orders')} WHERE id IN ({self._in(ids)})", None)])
        for oid in ids:
            self._order_leaves(oid)
            for lid in self.lines_of.pop(oid, ()):
                self.lines.pop(lid, None)
                self.all_lines.discard(lid)

    def soft_delete_orders(self) -> None:
        ids = self.live.sample(self.rng, max(1, self.batch // 2))
        if ids:
            self._txn([(f"UPDATE {self._q('orders')} SET deleted_at=NOW() WHERE id IN ({self._in(ids)})", None)])
            for oid in ids:
                self._order_leaves(oid)  # out of the bridge's view; its lines stay in the database

    def step(self) -> str:
        """One batched monolith action (MonolithWriter.step's weights); returns its name."""
        op = pick_step(self.rng)
        getattr(self, _BATCHED[op])()
        self.counts[op] = self.counts.get(op, 0) + 1
        return op

    def write_rows(self, rows: int) -> int:
        """Steps until at least `rows` more row changes are written; returns how many."""
        target = self.rows + rows
        while self.rows < target:
            self.step()
        return self.rows - (target - rows)

    def paced(self, rows_per_s: float, seconds: float, stop: threading.Event | None = None) -> int:
        """Steps at `rows_per_s` (sleeping between transactions) for `seconds`; returns rows written."""
        first = self.rows
        t0 = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now - t0 >= seconds or (stop is not None and stop.is_set()):
                break
            ahead = (self.rows - first) / rows_per_s - (now - t0)
            if ahead > 0:
                time.sleep(ahead)
            self.step()
        return self.rows - first


# --------------------------------------------------------------------------- memory


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (bytes) from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _statm(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and RssAnon (bytes) from /proc/<pid>/statm: resident, and resident - shared (shared =
    RssFile + RssShmem); {} when the process is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
    except OSError:
        return {}
    resident, shared = int(fields[1]), int(fields[2])
    return {"VmRSS": resident * _PAGE, "RssAnon": (resident - shared) * _PAGE}


def descendant_pids(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid` (from /proc/<pid>/task/<tid>/children, every thread)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in out:
                    out.append(kid)
                    todo.append(kid)
    return out


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """CPU seconds (user + system) per thread of `pid` and of its descendants: {"pid/tid": (comm, seconds)}."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, tuple[str, float]] = {}
    for p in [pid, *descendant_pids(pid)]:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[f"{p}/{tid}"] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return out


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    busy = sum(vals[:8]) - vals[3] - vals[4]   # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)[:200]
    except OSError:
        return ""


class MemorySampler(threading.Thread):
    """Samples /proc/<pid>/status every `interval` s: peaks and a coarse series (t, rss, anon).

    include_children: the figures cover this process and its descendants (the bridge and its
    binlog reader process): each sample sums VmRSS and RssAnon over the processes alive at
    that moment (peak_rss_anon_bytes = peak of that sum), and vm_hwm_bytes is the sum of each
    process's own VmHWM (a descendant's as last seen alive, at most `interval` before it ended).
    A sum of RSS counts shared pages (the interpreter, libraries) once per process.

    It runs inside the measured bridge process, so it is kept cheap (its CPU is counted with the
    bridge's): RSS and anon RSS from /proc/<pid>/statm (resident, and resident - shared = RssAnon),
    VmHWM (a high-water mark: reading it less often loses nothing) and the descendants every
    `full_every` samples and at stop()."""

    full_every = 10

    def __init__(self, interval: float = 0.2, *, include_children: bool = False) -> None:
        super().__init__(daemon=True, name="memory-sampler")
        self.interval = interval
        self.include_children = include_children
        self.peak_rss = 0
        self.peak_anon = 0
        self.series: list[tuple[float, int, int]] = []
        self.processes: dict[int, dict[str, Any]] = {}   # pid -> cmd, its VmHWM and RssAnon peak
        self._stop_ev = threading.Event()
        self._t0 = time.perf_counter()
        self._n = 0
        self._children: list[int] = []

    def sample(self, full: bool | None = None) -> dict[str, int]:
        if full is None:
            full = self._n % self.full_every == 0
        self._n += 1
        st = proc_status() if full else _statm()
        rss, anon = st.get("VmRSS", 0), st.get("RssAnon", 0)
        if self.include_children:
            me = self.processes.setdefault(os.getpid(), {"cmd": "bridge process (this one)"})
            if full:
                me["vm_hwm_bytes"] = st.get("VmHWM", 0)
                self._children = descendant_pids(os.getpid())
            me["peak_rss_anon_bytes"] = max(me.get("peak_rss_anon_bytes", 0), anon)
            for pid in self._children:
                cst = proc_status(pid) if full else _statm(pid)
                if not cst:
                    continue   # ended meanwhile
                p = self.processes.setdefault(pid, {"cmd": _cmdline(pid)})
                if full:
                    p["vm_hwm_bytes"] = max(p.get("vm_hwm_bytes", 0), cst.get("VmHWM", 0))
                p["peak_rss_anon_bytes"] = max(p.get("peak_rss_anon_bytes", 0), cst.get("RssAnon", 0))
                rss += cst.get("VmRSS", 0)
                anon += cst.get("RssAnon", 0)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)
        self.series.append((round(time.perf_counter() - self._t0, 2), rss, anon))
        return st

    def run(self) -> None:
        while not self._stop_ev.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, Any]:
        self._stop_ev.set()
        st = self.sample(full=True)
        step = max(1, len(self.series) // 50)
        hwm = st.get("VmHWM", 0)
        out: dict[str, Any] = {"scope": "this process"}
        if self.include_children:
            hwm = sum(p["vm_hwm_bytes"] for p in self.processes.values())
            out = {"scope": "bridge + reader process",
                   "processes": [{"pid": pid, **p} for pid, p in self.processes.items()]}
        return {"peak_rss_bytes": max(self.peak_rss, hwm), "peak_rss_anon_bytes": self.peak_anon,
                "vm_hwm_bytes": hwm, "series": self.series[::step], **out}


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"
