"""The re-snapshot signal under SIGKILL (`cdc-bridge snapshot --aggregate Order --id ...`, ingest/resnapshot.py).

"Repair" orders (their own id range, untouched by the monolith writer that runs all along) are changed
behind the binlog's back (`SET sql_log_bin = 0`: a line changed, added or removed, the total or the
status changed, the order deleted), so the test knows exactly how the bridge's view differs from the
database. Each round asks for a re-snapshot of some of them and kills the bridge at another moment:
right after the signal row commits, as soon as the re-snapshot is applied (batch not yet committed),
inside the open Kafka transaction that carries it, and after that transaction committed but before
LMDB was written (the restart re-applies the signal to state without publishing). At the end:
every event once, sequences 1..n, the events folded and the bridge's LMDB state both equal to the
database, and every re-snapshot's events are exactly the differences it had to publish, once (nothing
doubled by a replay, nothing lost).
"""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter, defaultdict

import bridge_harness as h
from cdc_bridge.source.preflight import current_position
from devenv import mariadb
from devenv.monolith import create_schema
from scale_harness import FAULTS, Cluster, Workload, check_story, dead_letter_keys, sleep_alive, wait_log

REPAIR_ID = 1_000_000          # repair orders: ids from here; their lines from REPAIR_LINE_ID
REPAIR_LINE_ID = 5_000_000
APPLIED = "re-snapshot applied"


class RepairOrders:
    """The repair orders as the bridge last saw them, and invisible changes to them."""

    def __init__(self, db: str, rng: random.Random) -> None:
        self.db, self.rng = db, rng
        self.conn = mariadb.admin_connect()
        self.orders: dict[int, dict] = {}     # id -> {"status", "total", "lines": {line id: quantity}}
        self.next_line = REPAIR_LINE_ID

    def _exec(self, statements: list[tuple[str, tuple]], *, binlog: bool) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"SET SESSION sql_log_bin = {1 if binlog else 0}")
            cur.execute("BEGIN")
            for sql, args in statements:
                cur.execute(sql.replace("{db}", f"`{self.db}`"), args)
            cur.execute("COMMIT")
            cur.execute("SET SESSION sql_log_bin = 1")

    def _line(self, oid: int, qty: int) -> tuple[str, tuple]:
        self.next_line += 1
        self.orders[oid]["lines"][self.next_line] = qty
        return ("INSERT INTO {db}.order_lines (id, order_id, sku, quantity, unit_price) VALUES (%s, %s, 'R', %s, 1.00)",
                (self.next_line, oid, qty))

    def create(self, n: int) -> None:
        """Visible, before the bridge's first start: its initial snapshot publishes n OrderSnapshotted."""
        stmts = []
        for oid in range(REPAIR_ID, REPAIR_ID + n):
            self.orders[oid] = {"status": "pending", "total": 10, "lines": {}}
            stmts.append(("INSERT INTO {db}.orders (id, customer_id, status, total, currency) "
                          "VALUES (%s, 1, 'pending', 10, 'EUR')", (oid,)))
            stmts.extend(self._line(oid, 1) for _ in range(3))
        self._exec(stmts, binlog=True)

    def change_invisibly(self, n: int) -> tuple[list[int], Counter]:
        """Changes n repair orders without row events; returns (ids to re-snapshot, the events expected:
        (aggregate id, event type, line id or None) -> count). Two unchanged ids are requested as well."""
        rng = self.rng
        live = sorted(self.orders)
        changed = rng.sample(live, n)
        expected: Counter = Counter()
        stmts: list[tuple[str, tuple]] = []
        for oid in changed:
            o = self.orders[oid]
            kind = rng.choice(["qty", "add", "drop", "total", "pay", "mix", "delete"])
            if kind == "pay" and o["status"] != "pending" or kind in ("drop", "qty", "mix") and not o["lines"]:
                kind = "add"
            if kind in ("drop", "mix"):
                lid = rng.choice(sorted(o["lines"]))
                del o["lines"][lid]
                stmts.append(("DELETE FROM {db}.order_lines WHERE id = %s", (lid,)))
                expected[(str(oid), "OrderLineRemoved", lid)] += 1
            if kind == "qty" or kind == "mix" and o["lines"]:   # (another line than the one dropped)
                lid = rng.choice(sorted(o["lines"]))
                o["lines"][lid] += 1
                stmts.append(("UPDATE {db}.order_lines SET quantity = quantity + 1 WHERE id = %s", (lid,)))
                expected[(str(oid), "OrderLineChanged", lid)] += 1
            if kind in ("add", "mix"):
                stmts.append(self._line(oid, 7))
                expected[(str(oid), "OrderLineAdded", self.next_line)] += 1
            if kind == "total":
                o["total"] += 1
                stmts.append(("UPDATE {db}.orders SET total = total + 1 WHERE id = %s", (oid,)))
                expected[(str(oid), "OrderUpdated", None)] += 1
            if kind == "pay":
                o["status"] = "paid"
                stmts.append(("UPDATE {db}.orders SET status = 'paid' WHERE id = %s", (oid,)))
                expected[(str(oid), "OrderPaid", None)] += 1
            if kind == "delete":   # the root row is gone: the re-snapshot publishes its deleted event
                del self.orders[oid]
                stmts.append(("DELETE FROM {db}.order_lines WHERE order_id = %s", (oid,)))
                stmts.append(("DELETE FROM {db}.orders WHERE id = %s", (oid,)))
                expected[(str(oid), "OrderDeleted", None)] += 1
        self._exec(stmts, binlog=False)
        unchanged = rng.sample([o for o in sorted(self.orders) if o not in changed], 2)
        return sorted(changed + unchanged), expected


def _event_key(e: dict) -> tuple:
    d = e["data"]
    return (e["aggregate_id"], e["event_type"], d.get("line_id") if "Line" in e["event_type"] else None)


def test_resnapshot_signal_under_sigkill(fresh_db, tmp_path):
    db = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, db)
    signal_table = h.create_signal_table(conn, db)
    topic = h.write_orders_mapping(tmp_path / "mappings", db)
    cfg = h.bridge_config(tmp_path, db, source={"signal_table": signal_table},
                          batch={"max_wait_ms": 100, "max_transactions": 50},
                          held={"max_age_seconds": 100000, "max_count": 100000})
    config_path = h.write_config(tmp_path, cfg)
    c = Cluster(tmp_path, cfg, config_path)
    repair = RepairOrders(db, random.Random(16))
    rng = random.Random(61)
    repair.create(60)
    expected_rounds: list[Counter] = []

    def restart(how: str = "", hold_ms: int = 1500) -> None:
        ready = c.log_count("bridge", "binlog source starting")
        c.run_embedded(env={FAULTS[how][0]: str(hold_ms)} if how else None)
        wait_log(c, "bridge", "binlog source starting", at_least=ready + 1)

    def resnapshot() -> str:
        """Changes some repair orders invisibly and requests their re-snapshot; returns the signal's log text."""
        ids, expected = repair.change_invisibly(12)
        expected_rounds.append(expected)
        out = h.request_resnapshot(config_path, "Order", ids)
        assert f"re-snapshot of Order {', '.join(map(str, ids))} requested" in out, out
        signal_id = re.search(r"signal (\d+) in", out).group(1)
        return f'"signal_id": "{signal_id}", "event": "{APPLIED}"'

    def applied(signal_line: str) -> None:
        h.wait_for(lambda: c.assert_alive() or c.log_count("bridge", signal_line), 30, signal_line, interval=0.01)

    def kill() -> None:
        c.signal("bridge", signal.SIGKILL)

    try:
        restart()
        with Workload(db, seed=5, rate=40):
            # 1. right after the signal row is committed (the bridge may not even have read it)
            resnapshot()
            time.sleep(rng.uniform(0.0, 0.3))
            kill()
            restart()
            # 2. as soon as the re-snapshot is applied: its batch is not committed yet
            applied(resnapshot())
            kill()
            restart("open")
            # 3. inside the open Kafka transaction that carries it (each is held open 1.5 s)
            applied(resnapshot())
            time.sleep(0.4)
            kill()
            restart("lmdb", hold_ms=3000)
            # 4. in Kafka (the checkpoint is past the signal row), not in LMDB (each write held 3 s): the
            #    restart must re-apply it to state, without publishing it again
            line = resnapshot()
            target = current_position(conn)
            h.wait_for(lambda: c.assert_alive() or c.checkpoint_at(target), 30, "the re-snapshot in Kafka",
                       interval=0.05)
            kill()
            log_before = c.log("bridge").read_text()
            restart()
            h.wait_for(lambda: "state caught up with the Kafka checkpoint" in c.log("bridge").read_text()[len(log_before):],
                       30, "the replay")
            replay = c.log("bridge").read_text()[len(log_before):]
            replay = replay[replay.index("LMDB is behind the Kafka checkpoint"):
                            replay.index("state caught up with the Kafka checkpoint")]
            assert line in replay, "the replay did not re-apply the re-snapshot"
            # 5. and one that nothing interrupts
            applied(resnapshot())
            sleep_alive(c, 1)
        c.wait_caught_up(conn, workers=False)
    finally:
        c.stop_all()

    events = h.events_of(h.read_topic(topic))
    n_events, n_aggregates = check_story(events, conn, db)      # once, 1..n, folded == the database
    # issue 18: every event matches its schema from the mappings and the database's columns
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    # and the state the bridge kept (re-applied by the replay in round 4) is the database's too
    state = h.comparable(h.orders_in_state(tmp_path / "state", cfg["state"]["partitions"]))
    expected_state = h.comparable(h.orders_in_db(conn, db))
    wrong = sorted(a for a in state.keys() | expected_state.keys() if state.get(a) != expected_state.get(a))
    assert not wrong, f"{len(wrong)} orders differ in LMDB, e.g. {wrong[0]}: state={state.get(wrong[0])} " \
                      f"db={expected_state.get(wrong[0])}"
    # the repair orders' events, by source transaction: the initial snapshot, then one group per re-snapshot
    by_txn: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if int(e["aggregate_id"]) >= REPAIR_ID:
            by_txn[e["source"]["txn_id"]].append(e)
    groups = [by_txn[t] for t in sorted(by_txn, key=lambda t: int(t.rsplit("-", 1)[1]))]
    assert Counter(e["event_type"] for e in groups[0]) == Counter({"OrderSnapshotted": 60})
    published = [Counter(_event_key(e) for e in g) for g in groups[1:]]
    assert published == expected_rounds, \
        "\n".join(f"re-snapshot {i + 1}: published {p}, expected {x}"
                  for i, (p, x) in enumerate(zip(published, expected_rounds)) if p != x) \
        or f"{len(published)} re-snapshots published, {len(expected_rounds)} requested"
    dead = [k for k in dead_letter_keys(h.read_topic(f"{cfg['name']}.dead-letter")) if k[2] and int(k[2]) >= REPAIR_ID]
    assert not dead, f"dead letters about repair orders: {dead}"
    print(f"\nre-snapshot under SIGKILL: {len(expected_rounds)} re-snapshots, 4 kills around them, "
          f"{sum(sum(x.values()) for x in expected_rounds)} differences published once each; "
          f"{n_events} events over {n_aggregates} aggregates, exactly once, folded == database")
