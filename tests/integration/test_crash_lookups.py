"""Lookups under SIGKILL: reference rows and the rows that look them up change while the bridge is killed.

A writer changes films (title), copies (inventory: which film, its key, deletes) and rentals, whose
events carry `film_id` and `film_title` looked up through inventory -> film, including a reference row
and the rental that uses it changed in ONE transaction (in both statement orders), reference rows deleted
and re-keyed, and rows that point at nothing. The bridge (`run`, then ingest + 2 workers) is SIGKILLed
at random moments and restarted.

The oracle is the writer's own model of the database: after every COMMIT it records the transaction's
GTID (`@@last_gtid`) and, for each rental it touched, the fields its one event must carry, with the
lookups resolved in the model as of the end of that transaction (the documented rule). That is
decisive where comparing with a second bridge replayed over the same binlog would not be: a replay
runs the same enrichment code, so a wrong rule or a reference row that a restart never stores again
(the snapshot's, or one lost between Kafka and LMDB) would be wrong in both and compare equal. Here
every rental event is matched to its source transaction: its kind, fields, lookups and `changes`
(whose `from` comes from the state the restarts rebuilt) must equal the model's, one event per touch.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import yaml

import bridge_harness as h
from devenv import mariadb
from scale_harness import Cluster, kill_rounds, sleep_alive, wait_log

FIELDS = ("rental_id", "inventory_id", "version", "film_id", "film_title")
KIND = {"RentalCreated": "created", "RentalUpdated": "updated", "RentalDeleted": "deleted",
        "RentalSnapshotted": "snapshotted"}
MISSING = 99999   # an inventory / film id that never exists: the lookup is null


def _setup(db: str, d: Path, name: str) -> tuple[Path, str]:
    """Tables (created once per database) and a Rental mapping with lookups in d/mappings: (config, topic)."""
    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS `{db}`.film (film_id INT PRIMARY KEY, title VARCHAR(100) NOT NULL)")
        cur.execute(f"CREATE TABLE IF NOT EXISTS `{db}`.inventory (inventory_id INT PRIMARY KEY, film_id INT NOT NULL)")
        cur.execute(f"CREATE TABLE IF NOT EXISTS `{db}`.rental (rental_id INT PRIMARY KEY, inventory_id INT NOT NULL, "
                    "version INT NOT NULL, note VARCHAR(50) NULL)")
    topic = f"{db}.rental.events.{name}"
    mapping = {
        "aggregate": "Rental", "topic": topic,
        "root": {"table": f"{db}.rental", "id": "rental_id", "fields": ["rental_id", "inventory_id", "version"],
                 "lookups": {
                     "film_id": {"from": "inventory_id",
                                 "via": [{"table": f"{db}.inventory", "key": "inventory_id", "take": "film_id"}]},
                     "film_title": {"from": "inventory_id",
                                    "via": [{"table": f"{db}.inventory", "key": "inventory_id", "take": "film_id"},
                                            {"table": f"{db}.film", "key": "film_id", "take": "title"}]}}},
    }
    (d / "mappings").mkdir(parents=True)
    (d / "mappings" / "rental.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    cfg = h.bridge_config(d, db, batch={"max_wait_ms": 100, "max_transactions": 50},
                          kafka={"transaction_timeout_ms": 10000},
                          worker={"session_timeout_ms": 6000, "max_poll_interval_ms": 20000})
    cfg["name"] = f"lk-{name}-{db[-8:]}"
    return h.write_config(d, cfg), topic


# a step's share of one source transaction: (statements, changes to the model once committed,
# rentals touched as (rental id, "created" | "updated" | "deleted", the deleted row's last values))
Part = tuple[list[tuple[str, tuple]], list[Callable[[], None]], list[tuple[int, str, dict | None]]]


class RentalWriter:
    """The monolith for this test, on its own thread; its model is the database (it is the only writer)."""

    def __init__(self, db: str, seed: int) -> None:
        self.db = db
        self.conn = mariadb.admin_connect()
        self.rng = random.Random(seed)
        self.films: dict[int, str] = {}
        self.inv: dict[int, int] = {}                  # inventory_id -> film_id
        self.rentals: dict[int, dict[str, int]] = {}   # rental_id -> {inventory_id, version}
        self.ids = Counter()
        self.expected: dict[str, list[tuple[str | None, str, dict]]] = defaultdict(list)
        self.ops = Counter()
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    # ------------------------------------------------------------------ the model
    def _new(self, kind: str) -> int:
        self.ids[kind] += 1
        return self.ids[kind]

    def resolved(self, inventory_id: int) -> tuple[int | None, str | None]:
        film = self.inv.get(inventory_id)
        return film, (self.films.get(film) if film is not None else None)

    def _fields(self, rid: int, row: dict[str, int]) -> dict[str, Any]:
        film_id, title = self.resolved(row["inventory_id"])
        return {"rental_id": rid, "inventory_id": row["inventory_id"], "version": row["version"],
                "film_id": film_id, "film_title": title}

    def _run_txn(self, *parts: Part, before_bridge: bool = False) -> None:
        stmts = [s for p in parts for s in p[0]]
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            for sql, args in stmts:
                cur.execute(sql.replace("{db}", self.db), args)
            cur.execute("COMMIT")
            cur.execute("SELECT @@last_gtid")
            gtid = None if before_bridge else cur.fetchone()[0]
        for p in parts:
            for mutate in p[1]:
                mutate()
        # every rental touched gets one event carrying the lookups as of the END of the transaction
        for p in parts:
            for rid, kind, last_row in p[2]:
                row = last_row if kind == "deleted" else self.rentals[rid]
                self.expected[str(rid)].append((gtid, "snapshotted" if before_bridge else kind,
                                                self._fields(rid, row)))

    # ------------------------------------------------------------------ statements + model changes
    def new_film(self, fid: int | None = None) -> Part:
        fid = fid or self._new("film")
        title = f"film {fid} v0"
        return [("INSERT INTO `{db}`.film VALUES (%s, %s)", (fid, title))], \
            [lambda: self.films.__setitem__(fid, title)], []

    def rename_film(self, fid: int) -> Part:
        title = f"film {fid} v{self._new('title')}"
        return [("UPDATE `{db}`.film SET title = %s WHERE film_id = %s", (title, fid))], \
            [lambda: self.films.__setitem__(fid, title)], []

    def delete_film(self, fid: int) -> Part:
        return [("DELETE FROM `{db}`.film WHERE film_id = %s", (fid,))], [lambda: self.films.pop(fid)], []

    def new_inventory(self, film: int, iid: int | None = None) -> Part:
        iid = iid or self._new("inv")
        return [("INSERT INTO `{db}`.inventory VALUES (%s, %s)", (iid, film))], \
            [lambda: self.inv.__setitem__(iid, film)], []

    def move_inventory(self, iid: int, film: int) -> Part:
        return [("UPDATE `{db}`.inventory SET film_id = %s WHERE inventory_id = %s", (film, iid))], \
            [lambda: self.inv.__setitem__(iid, film)], []

    def rekey_inventory(self, iid: int) -> Part:
        """The reference row's key changes: the bridge forgets the old key and learns the new one."""
        new = self._new("inv")

        def mutate() -> None:
            self.inv[new] = self.inv.pop(iid)
        return [("UPDATE `{db}`.inventory SET inventory_id = %s WHERE inventory_id = %s", (new, iid))], [mutate], []

    def delete_inventory(self, iid: int) -> Part:
        return [("DELETE FROM `{db}`.inventory WHERE inventory_id = %s", (iid,))], [lambda: self.inv.pop(iid)], []

    def new_rental(self, iid: int) -> Part:
        rid = self._new("rental")
        return [("INSERT INTO `{db}`.rental VALUES (%s, %s, 1, NULL)", (rid, iid))], \
            [lambda: self.rentals.__setitem__(rid, {"inventory_id": iid, "version": 1})], [(rid, "created", None)]

    def touch_rental(self, rid: int, iid: int | None = None) -> Part:
        """Every touch changes `version`: one updated event per touch, whatever the lookups do."""
        row = self.rentals[rid]
        new = {"inventory_id": row["inventory_id"] if iid is None else iid, "version": row["version"] + 1}
        return [("UPDATE `{db}`.rental SET version = %s, inventory_id = %s, note = %s WHERE rental_id = %s",
                 (new["version"], new["inventory_id"], f"n{self.rng.random():.6f}", rid))], \
            [lambda: self.rentals.__setitem__(rid, new)], [(rid, "updated", None)]

    def delete_rental(self, rid: int) -> Part:
        return [("DELETE FROM `{db}`.rental WHERE rental_id = %s", (rid,))], \
            [lambda: self.rentals.pop(rid)], [(rid, "deleted", dict(self.rentals[rid]))]

    # ------------------------------------------------------------------ the mix
    def prefill(self) -> None:
        """Rows that exist before the bridge's first start: its snapshot reads them (references first)."""
        for _ in range(15):
            self._run_txn(self.new_film())
        for _ in range(20):
            self._run_txn(self.new_inventory(self.rng.choice(list(self.films))))
        for _ in range(10):
            self._run_txn(self.new_rental(self.rng.choice(list(self.inv))), before_bridge=True)

    def step(self) -> None:
        rng = self.rng
        films, invs, rentals = list(self.films), list(self.inv), list(self.rentals)
        if len(films) < 5 or len(invs) < 5 or len(rentals) < 5:
            op = rng.choice(["new_film", "new_inventory", "new_rental", "create_all"])
        else:
            op = rng.choices(
                ["new_film", "rename_film", "delete_film", "new_inventory", "move_inventory", "rekey_inventory",
                 "delete_inventory", "new_rental", "touch_rental", "delete_rental", "rename_and_touch",
                 "move_and_touch", "delete_ref_and_touch", "rekey_and_touch", "create_all", "rename_and_delete"],
                [4, 10, 2, 4, 7, 2, 2, 12, 14, 4, 10, 6, 4, 3, 4, 2])[0]
        rid = rng.choice(rentals) if rentals else None
        # the rental's copy and film, when they exist (the combined steps change what the rental looks up)
        iid = self.rentals[rid]["inventory_id"] if rid is not None else None
        fid = self.inv.get(iid) if iid is not None else None
        if op in ("rename_and_touch", "rename_and_delete", "delete_ref_and_touch") and fid not in self.films:
            op = "touch_rental"
        if op in ("move_and_touch", "rekey_and_touch") and iid not in self.inv:
            op = "touch_rental"
        parts: list[Part]
        if op == "new_film":
            parts = [self.new_film()]
        elif op == "rename_film":
            parts = [self.rename_film(rng.choice(films))]
        elif op == "delete_film":
            parts = [self.delete_film(rng.choice(films))]
        elif op == "new_inventory":
            parts = [self.new_inventory(rng.choice(films + [MISSING]))]
        elif op == "move_inventory":
            parts = [self.move_inventory(rng.choice(invs), rng.choice(films))]
        elif op == "rekey_inventory":
            parts = [self.rekey_inventory(rng.choice(invs))]
        elif op == "delete_inventory":
            parts = [self.delete_inventory(rng.choice(invs))]
        elif op == "new_rental":
            parts = [self.new_rental(rng.choice(invs + [MISSING]))]
        elif op == "touch_rental":
            parts = [self.touch_rental(rid, rng.choice(invs) if rng.random() < 0.3 else None)]
        elif op == "delete_rental":
            parts = [self.delete_rental(rid)]
        elif op == "rename_and_touch":      # the reference row and its user in ONE transaction, either order
            parts = [self.rename_film(fid), self.touch_rental(rid)]
        elif op == "move_and_touch":
            parts = [self.move_inventory(iid, rng.choice(films)), self.touch_rental(rid)]
        elif op == "delete_ref_and_touch":  # the reference row deleted, its user changed, one transaction
            parts = [self.delete_film(fid) if rng.random() < 0.5 else self.delete_inventory(iid),
                     self.touch_rental(rid)]
        elif op == "rekey_and_touch":
            parts = [self.rekey_inventory(iid), self.touch_rental(rid)]
        elif op == "create_all":            # a film, a copy of it and its rental in one transaction
            f, i = self._new("film"), self._new("inv")
            parts = [self.new_film(f), self.new_inventory(f, i), self.new_rental(i)]
        else:                               # rename_and_delete: the deleted event carries the new title
            parts = [self.rename_film(fid), self.delete_rental(rid)]
        if len(parts) > 1 and rng.random() < 0.5:
            parts.reverse()
        self._run_txn(*parts)
        self.ops[op] += 1

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                self.step()
                time.sleep(0.008)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.error = e

    def __enter__(self) -> "RentalWriter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(30)
        assert self.error is None, f"the writer failed: {self.error!r}"

    # ------------------------------------------------------------------ the verdict
    def check(self, events: list[dict]) -> int:
        """Every event once, sequences 1..n, and per rental exactly the model's events, in order."""
        h.check_unique_and_gapless(events)
        got: dict[str, list[dict]] = defaultdict(list)
        for e in sorted(events, key=lambda e: (e["aggregate_id"], e["sequence"])):
            got[e["aggregate_id"]].append(e)
        assert set(got) == set(self.expected), \
            f"rentals without events: {sorted(set(self.expected) - set(got))[:10]}, " \
            f"events of unknown rentals: {sorted(set(got) - set(self.expected))[:10]}"
        for rid, want in self.expected.items():
            evs = got[rid]
            seen = [(e["source"]["gtid"] if KIND[e["event_type"]] != "snapshotted" else None, KIND[e["event_type"]],
                     {k: e["data"].get(k) for k in FIELDS}) for e in evs]
            assert seen == want, f"rental {rid}: events differ from the database's history\n" \
                                 f"events: {seen}\nexpected: {want}"
            previous = None
            for e, (_, kind, fields) in zip(evs, want):
                if kind == "updated":
                    changes = {k: {"from": previous[k], "to": fields[k]} for k in FIELDS if previous[k] != fields[k]}
                    assert e["data"]["changes"] == changes, f"rental {rid} seq {e['sequence']}: changes " \
                                                            f"{e['data']['changes']}, expected {changes}"
                previous = fields
        return sum(len(v) for v in self.expected.values())


def test_lookups_under_sigkill_embedded(fresh_db, tmp_path):
    db = fresh_db
    config_path, topic = _setup(db, tmp_path / "emb", "emb")
    c = Cluster(tmp_path / "emb", yaml.safe_load(config_path.read_text()), config_path)
    writer = RentalWriter(db, seed=4242)
    writer.prefill()
    try:
        c.run_embedded()
        wait_log(c, "bridge", "binlog source starting")
        with writer:
            kills = kill_rounds(c, ["bridge", "bridge+lmdb", "bridge+any", "bridge+open", "bridge", "bridge+lmdb",
                                    "bridge+any"], random.Random(99), {"bridge": c.run_embedded})
            sleep_alive(c, 1.5)
        c.wait_caught_up(mariadb.admin_connect(), workers=False)
    finally:
        c.stop_all()
    events = h.events_of(h.read_topic(topic))
    n = writer.check(events)
    # issue 18: every event (lookup fields among them) matches its schema from the mappings and the columns
    assert h.validate_events(events, tmp_path / "emb" / "mappings", mariadb.connection_settings()) == len(events)
    # the kills after a Kafka commit left LMDB behind: those restarts re-applied reference rows too
    assert c.log_count("bridge", "LMDB is behind the Kafka checkpoint") >= kills["lmdb"] == 2
    assert n > 500 and writer.ops["rename_and_touch"] and writer.ops["delete_ref_and_touch"]
    print(f"\nlookups, embedded: SIGKILLs {dict(kills)}, {sum(writer.ops.values())} writer transactions, "
          f"{n} rental events equal to the database's history")


def test_lookups_under_sigkill_ingest_and_workers(fresh_db, tmp_path):
    db = fresh_db
    config_path, topic = _setup(db, tmp_path / "wrk", "wrk")
    c = Cluster(tmp_path / "wrk", yaml.safe_load(config_path.read_text()), config_path)
    writer = RentalWriter(db, seed=777)
    writer.prefill()
    try:
        c.ingest()
        c.worker(1)
        c.worker(2)
        wait_log(c, "ingest", "binlog source starting")   # the snapshot of the prefilled rows is done
        wait_log(c, "w1", "partition started")
        wait_log(c, "w2", "partition started")
        with writer:
            kills = kill_rounds(c, ["w1+lmdb", "ingest", "w2+open", "ingest+any"], random.Random(7),
                                {"ingest": c.ingest, "w1": lambda **kw: c.worker(1, **kw),
                                 "w2": lambda **kw: c.worker(2, **kw)})
            sleep_alive(c, 1.5)
        c.wait_caught_up(mariadb.admin_connect(), workers=True)
    finally:
        c.stop_all()
    n = writer.check(h.events_of(h.read_topic(topic)))
    # w1 was killed between a Kafka commit and its LMDB write: it restored state (reference rows among it)
    # from the changelog
    assert c.log_count("w1", "restoring partition state from the changelog") >= 1
    assert n > 500
    print(f"\nlookups, ingest + 2 workers: SIGKILLs {dict(kills)}, {sum(writer.ops.values())} writer "
          f"transactions, {n} rental events equal to the database's history")
