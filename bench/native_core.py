"""The declarative apply, compiled (cdc_bridge._native) vs Python (aggregate/native.ReferenceCore), on the
same recorded calls: CPU time per command (apply) and per event (envelope), median of --repeat runs.

    .venv/bin/python bench/native_core.py                      # generated streams, no services needed
    .venv/bin/python bench/native_core.py --captured bench/results/txns.pickle   # + bench/micro.py's capture

Streams (each recorded once through ReferenceCore: every call's input state is the reference's, so both
implementations get identical inputs and their outputs are checked equal before timing):
  orders     the orders mapping under devenv/monolith.py's action mix, batched as bench/common.py does
             (each source transaction one action on 20 orders/lines: orders placed with 1-5 lines, lines
             before their order, status transitions, unmapped updates, line changes and deletes, hard and
             soft order deletes); one call per (order, source transaction)
  large      orders of 200 lines; each transaction changes 5 lines of one order (state and events are large)
  captured   (--captured) bench/micro.py's SourceTransactions translated by the orders mapping
Timing: time.process_time around all calls of a stream, divided by its commands (apply) or events
(envelope); the median of --repeat runs, Python and compiled alternating (A B, B A, ...). The interpreter runs as the daemon does (cdc_bridge.tuning.tune():
the recorded calls frozen out of the collector's scans, young collections every 50,000 allocations);
--no-tuning keeps CPython's defaults. The apply of a call includes what the API includes: reading
the state JSON, deciding, evolving, writing state and event data JSON.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from cdc_bridge.aggregate.declarative import DeclarativeDecider  # noqa: E402
from cdc_bridge.aggregate.native import ReferenceCore, core_for  # noqa: E402
from cdc_bridge.jsoncodec import dumps  # noqa: E402
from cdc_bridge.mapping.schema import AggregateMapping  # noqa: E402
from devenv.monolith import TRANSITIONS, pick_step  # noqa: E402

Call = tuple  # (state_json, commands, aggregate_id)


class Orders:
    """A model of shop.orders / shop.order_lines driven by the monolith's action mix; emits command tuples."""

    def __init__(self, seed: int, batch: int = 20, lines_per_order: tuple[int, int] = (1, 5)) -> None:
        self.rng = random.Random(seed)
        self.batch = batch
        self.lines_per_order = lines_per_order
        self.next_order = 1
        self.next_line = 1
        self.orders: dict[int, dict] = {}          # live orders (in the bridge's view): row
        self.lines: dict[int, dict[int, dict]] = {}  # order id -> line id -> row
        self.early: list[int] = []                 # orders whose lines exist, the order not yet
        self.n = 0
        self.ts = 1_767_225_600.0

    def _order_row(self, oid: int) -> dict:
        return {"order_id": oid, "customer_id": self.rng.randint(1, 5000), "status": "pending",
                "total": f"{self.rng.randint(100, 999999) / 100:.2f}", "currency": self.rng.choice(["EUR", "USD"]),
                "created_at": "2026-01-01T10:00:00"}

    def _line_row(self, lid: int) -> dict:
        return {"line_id": lid, "sku": f"SKU-{self.rng.randint(1, 500):04d}", "quantity": self.rng.randint(1, 5),
                "unit_price": f"{self.rng.randint(100, 99999) / 100:.2f}"}

    def _new_lines(self, oid: int, n: int) -> list[tuple[int, dict]]:
        out = []
        for _ in range(n):
            lid, self.next_line = self.next_line, self.next_line + 1
            row = self._line_row(lid)
            self.lines.setdefault(oid, {})[lid] = row
            out.append((lid, row))
        return out

    def txn(self) -> dict[str, list[tuple]]:
        """One source transaction: commands grouped by order id, in binlog order."""
        self.n += 1
        self.ts += 0.01
        gtid = f"0-1-{self.n}"
        pos = {"gtid": gtid, "binlog_file": "mysql-bin.000001", "binlog_pos": 1000 * self.n}
        groups: dict[str, list[tuple]] = {}

        def cmd(oid: int, entity: str, eid: int, op: str, payload: dict, soft: bool = False) -> None:
            table = "shop.orders" if entity == "root" else "shop.order_lines"
            before = dict(payload) if op in ("update", "delete") else None
            groups.setdefault(str(oid), []).append(("Order", entity, str(eid), op, dict(payload), before, table, soft,
                                                    self.ts, gtid, pos))

        action = pick_step(self.rng)
        live = list(self.orders)
        for _ in range(self.batch):
            if action in ("place_order", "lines_before_order"):
                oid, self.next_order = self.next_order, self.next_order + 1
                if action == "place_order":
                    self.orders[oid] = self._order_row(oid)
                    cmd(oid, "root", oid, "insert", self.orders[oid])
                else:
                    self.early.append(oid)
                for lid, row in self._new_lines(oid, self.rng.randint(*self.lines_per_order)):
                    cmd(oid, "lines", lid, "insert", row)
            elif action == "late_order" and self.early:
                oid = self.early.pop(0)
                self.orders[oid] = self._order_row(oid)
                cmd(oid, "root", oid, "insert", self.orders[oid])
            elif action in ("change_status", "touch_unmapped") and live:
                oid = self.rng.choice(live)
                row = self.orders[oid]
                nxt = TRANSITIONS.get(row["status"], [])
                if action == "change_status" and nxt:
                    row["status"] = self.rng.choice(nxt)
                cmd(oid, "root", oid, "update", row)   # touch_unmapped: an update that changes no mapped field
            elif action in ("change_line", "delete_line") and live:
                oid = self.rng.choice(live)
                if self.lines.get(oid):
                    lid = self.rng.choice(list(self.lines[oid]))
                    if action == "change_line":
                        self.lines[oid][lid]["quantity"] += 1
                        cmd(oid, "lines", lid, "update", self.lines[oid][lid])
                    else:
                        cmd(oid, "lines", lid, "delete", self.lines[oid].pop(lid))
            elif action in ("delete_order", "soft_delete_order") and live:
                oid = self.rng.choice(live)
                if oid not in self.orders:
                    continue
                if action == "delete_order":
                    for lid, row in self.lines.pop(oid, {}).items():
                        cmd(oid, "lines", lid, "delete", row)
                cmd(oid, "root", oid, "delete", self.orders.pop(oid), soft=action == "soft_delete_order")
        return groups


def orders_calls(n_txns: int, seed: int = 9) -> list[tuple[str, list[tuple]]]:
    gen = Orders(seed)
    return [(oid, cmds) for _ in range(n_txns) for oid, cmds in gen.txn().items()]


def large_calls(n_txns: int, n_lines: int = 200, seed: int = 10) -> list[tuple[str, list[tuple]]]:
    """Orders of n_lines lines (placed in one transaction); then each transaction changes 5 lines of one order."""
    gen = Orders(seed, batch=1, lines_per_order=(n_lines, n_lines))
    out: list[tuple[str, list[tuple]]] = []
    pos = {"gtid": None, "binlog_file": "mysql-bin.000002", "binlog_pos": 1}
    for oid in range(1, 21):
        gen.next_order = oid
        row = gen._order_row(oid)
        cmds = [("Order", "root", str(oid), "insert", row, None, "shop.orders", False, 1.0, "t", pos)]
        cmds += [("Order", "lines", str(lid), "insert", r, None, "shop.order_lines", False, 1.0, "t", pos)
                 for lid, r in gen._new_lines(oid, n_lines)]
        out.append((str(oid), cmds))
    rng = random.Random(seed)
    for _ in range(n_txns):
        oid = rng.randint(1, 20)
        cmds = []
        for lid in rng.sample(list(gen.lines[oid]), 5):
            gen.lines[oid][lid]["quantity"] += 1
            r = gen.lines[oid][lid]
            cmds.append(("Order", "lines", str(lid), "update", dict(r), dict(r), "shop.order_lines", False, 2.0, "t",
                         pos))
        out.append((str(oid), cmds))
    return out


def captured_calls(path: str) -> list[tuple[str, list[tuple]]]:
    """bench/micro.py's captured SourceTransactions, translated by the orders mapping (as the bridge does)."""
    import pickle
    import tempfile

    from cdc_bridge.mapping.loader import load_mappings
    from tests.integration.bridge_harness import write_orders_mapping

    data = pickle.loads(Path(path).read_bytes())
    tmp = Path(tempfile.mkdtemp(prefix="cdc-native-bench-"))
    write_orders_mapping(tmp / "mappings", data["db"])
    mappings = load_mappings(tmp / "mappings")
    out = []
    for txn in data["txns"]:
        commands, _ = mappings.translate(txn)
        groups: dict[tuple[str, str], list[tuple]] = {}
        for c in commands:
            groups.setdefault((c.aggregate, c.aggregate_id), []).append(
                (c.aggregate, c.entity, c.entity_id, c.operation, c.payload, c.before, c.table, c.soft, c.commit_ts,
                 c.txn_id, c.position.to_dict()))
        out.extend((agg_id, cmds) for (_, agg_id), cmds in groups.items())
    return out


def record(ref: ReferenceCore, stream: list[tuple[str, list[tuple]]]) -> tuple[list[Call], list[tuple]]:
    """Every call with the reference's state before it; every published event's envelope arguments."""
    states: dict[str, bytes] = {}
    seqs: dict[str, int] = {}
    calls, envelopes = [], []
    for aggregate_id, cmds in stream:
        state = states.get(aggregate_id)
        calls.append((state, cmds, aggregate_id))
        new_state, drafts, _, _ = ref.apply(state, cmds, aggregate_id)
        states[aggregate_id] = new_state
        pos = cmds[0][10] or {"gtid": None, "binlog_file": "f", "binlog_pos": 0}
        for event_type, table, data_json, internal, _ in drafts:
            if internal:
                continue
            seqs[aggregate_id] = seqs.get(aggregate_id, 0) + 1
            source = dumps({"table": table, "gtid": pos["gtid"], "binlog_file": pos["binlog_file"],
                            "binlog_pos": pos["binlog_pos"], "txn_id": cmds[0][9]})
            envelopes.append((event_type, "Order", aggregate_id, seqs[aggregate_id], 1, "2026-01-01T00:00:00.000000Z",
                              source, data_json))
    return calls, envelopes


def cpu_pair(fa, fb, items, repeat: int) -> tuple[float, float]:
    """Median CPU seconds of fa and of fb over all items; the two alternate (A B, B A, ...) so that
    other load on the machine falls on both alike."""
    runs: tuple[list[float], list[float]] = ([], [])
    for r in range(repeat):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            fn = (fa, fb)[which]
            t0 = time.process_time()
            for args in items:
                fn(*args)
            runs[which].append(time.process_time() - t0)
    return statistics.median(runs[0]), statistics.median(runs[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txns", type=int, default=2000, help="source transactions of the orders stream")
    ap.add_argument("--large-txns", type=int, default=2000, help="transactions of the large stream")
    ap.add_argument("--captured", help="bench/micro.py capture's txns.pickle (translated by the orders mapping)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-tuning", action="store_true", help="CPython's garbage collector defaults")
    args = ap.parse_args()

    mapping = AggregateMapping.model_validate(yaml.safe_load((ROOT / "mappings" / "orders.yaml").read_text()))
    decider = DeclarativeDecider(mapping)
    ref = ReferenceCore(decider)
    nat = core_for(decider)
    if nat is None:
        print("cdc_bridge._native is not available (or CDC_BRIDGE_NATIVE_APPLY=0): nothing to compare")
        return 1

    streams = {"orders": orders_calls(args.txns), "large": large_calls(args.large_txns)}
    if args.captured:
        streams["captured"] = captured_calls(args.captured)
    recorded = {}
    for name, stream in streams.items():
        calls, envelopes = record(ref, stream)
        for c in calls:   # the recorded outputs must agree before anything is timed
            assert nat.core.apply(*c) == ref.apply(*c), f"{name}: outputs differ for {c[2]}"
        for e in envelopes:
            assert nat.core.envelope(*e) == ref.envelope(*e)
        recorded[name] = calls, envelopes
    if not args.no_tuning:
        from cdc_bridge.tuning import tune

        tune()
    print(f"median of {args.repeat} runs, CPU time (time.process_time), Python {sys.version.split()[0]}, "
          f"garbage collector {'defaults' if args.no_tuning else 'as the daemon tunes it'}\n")
    head = (f"{'stream':<10} {'calls':>7} {'commands':>9} {'events':>7} | {'apply µs/command':^25} | "
            f"{'envelope µs/event':^23}")
    print(head)
    print(f"{'':<10} {'':>7} {'':>9} {'':>7} | {'python':>8} {'native':>8} {'ratio':>6} | {'python':>7} "
          f"{'native':>7} {'ratio':>6}")
    print("-" * len(head))
    for name, (calls, envelopes) in recorded.items():
        n_cmds = sum(len(c[1]) for c in calls)
        py_apply, rs_apply = (t / n_cmds * 1e6 for t in cpu_pair(ref.apply, nat.core.apply, calls, args.repeat))
        n_ev = max(1, len(envelopes))
        py_env, rs_env = (t / n_ev * 1e6 for t in cpu_pair(ref.envelope, nat.core.envelope, envelopes, args.repeat))
        print(f"{name:<10} {len(calls):>7} {n_cmds:>9} {len(envelopes):>7} | {py_apply:>8.2f} {rs_apply:>8.2f} "
              f"{py_apply / rs_apply:>5.1f}x | {py_env:>7.2f} {rs_env:>7.2f} {py_env / rs_env:>5.1f}x")
    print("\nratio = python / native; the calls and envelopes were checked byte-identical first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
