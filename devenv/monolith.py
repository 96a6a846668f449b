"""A small stand-in for the legacy monolith: writes orders and order lines like a CRUD app would.

Used by `make demo`, the crash test and the benchmark. It deliberately does the
awkward things real monoliths do: lines written before their order (in an earlier
transaction), status changes, updates of columns nobody maps, soft deletes, hard
deletes, and now and then one huge transaction.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

SCHEMA_SQL = Path(__file__).resolve().parents[1] / "mappings" / "schema.sql"
TRANSITIONS = {"pending": ["paid", "cancelled"], "paid": ["shipped", "cancelled"], "shipped": [], "cancelled": []}


def schema_statements(schema: str) -> list[str]:
    """mappings/schema.sql with the example schema `shop` renamed to `schema`."""
    sql = SCHEMA_SQL.read_text()
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\bshop\.", f"`{schema}`.", sql)
    sql = re.sub(r"DATABASE IF NOT EXISTS shop\b", f"DATABASE IF NOT EXISTS `{schema}`", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def create_schema(conn: pymysql.connections.Connection, schema: str) -> None:
    with conn.cursor() as cur:
        for stmt in schema_statements(schema):
            cur.execute(stmt)


# The monolith's mix of actions, as (cumulative probability, action); bench/common.py batches the same mix.
STEP_MIX = (
    (0.30, "place_order"), (0.38, "lines_before_order"), (0.46, "late_order"), (0.64, "change_status"),
    (0.72, "touch_unmapped"), (0.82, "change_line"), (0.89, "delete_line"), (0.95, "delete_order"),
    (1.00, "soft_delete_order"),
)


def pick_step(rng: random.Random) -> str:
    """One action of STEP_MIX (one rng.random() draw)."""
    r = rng.random()
    for bound, op in STEP_MIX:
        if r < bound:
            return op
    return STEP_MIX[-1][1]


@dataclass
class MonolithWriter:
    conn: pymysql.connections.Connection
    schema: str
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    next_order_id: int = 1
    next_line_id: int = 1
    orders: dict[int, str] = field(default_factory=dict)          # live order id -> status
    lines: dict[int, int] = field(default_factory=dict)           # live line id -> order id
    early_lines: list[int] = field(default_factory=list)          # order ids whose lines exist but the order not yet
    counts: dict[str, int] = field(default_factory=dict)

    def _q(self, table: str) -> str:
        return f"`{self.schema}`.`{table}`"

    def _txn(self, statements: list[tuple[str, Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            for sql, args in statements:
                if isinstance(args, list):
                    cur.executemany(sql, args)
                else:
                    cur.execute(sql, args)
            cur.execute("COMMIT")

    def _line_rows(self, order_id: int, n: int) -> list[tuple]:
        rows = []
        for _ in range(n):
            lid = self.next_line_id
            self.next_line_id += 1
            self.lines[lid] = order_id
            rows.append((lid, order_id, f"SKU-{self.rng.randint(1, 500):04d}", self.rng.randint(1, 5),
                         f"{self.rng.randint(100, 99999) / 100:.2f}"))
        return rows

    def _insert_lines(self) -> str:
        return f"INSERT INTO {self._q('order_lines')} (id, order_id, sku, quantity, unit_price) VALUES (%s,%s,%s,%s,%s)"

    def _insert_order(self) -> str:
        return f"INSERT INTO {self._q('orders')} (id, customer_id, status, total, currency) VALUES (%s,%s,'pending',%s,'EUR')"

    def place_order(self, n_lines: int | None = None) -> int:
        oid = self.next_order_id
        self.next_order_id += 1
        n = self.rng.randint(1, 4) if n_lines is None else n_lines
        self._txn([
            (self._insert_order(), (oid, self.rng.randint(1, 1000), f"{self.rng.randint(100, 99999) / 100:.2f}")),
            (self._insert_lines(), self._line_rows(oid, n)),
        ])
        self.orders[oid] = "pending"
        return oid

    def lines_before_order(self) -> int:
        """Writes lines for an order that does not exist yet; the order follows in a later step."""
        oid = self.next_order_id
        self.next_order_id += 1
        self._txn([(self._insert_lines(), self._line_rows(oid, self.rng.randint(1, 3)))])
        self.early_lines.append(oid)
        return oid

    def late_order(self) -> int | None:
        if not self.early_lines:
            return None
        oid = self.early_lines.pop(0)
        self._txn([(self._insert_order(), (oid, self.rng.randint(1, 1000), "10.00"))])
        self.orders[oid] = "pending"
        return oid

    def change_status(self) -> int | None:
        movable = [o for o, s in self.orders.items() if TRANSITIONS[s]]
        if not movable:
            return None
        oid = self.rng.choice(movable)
        new = self.rng.choice(TRANSITIONS[self.orders[oid]])
        self._txn([(f"UPDATE {self._q('orders')} SET status=%s WHERE id=%s", (new, oid))])
        self.orders[oid] = new
        return oid

    def touch_unmapped(self) -> int | None:
        if not self.orders:
            return None
        oid = self.rng.choice(list(self.orders))
        self._txn([(f"UPDATE {self._q('orders')} SET note=%s WHERE id=%s", (f"note {self.rng.random()}", oid))])
        return oid

    def change_line(self) -> int | None:
        if not self.lines:
            return None
        lid = self.rng.choice(list(self.lines))
        self._txn([(f"UPDATE {self._q('order_lines')} SET quantity=quantity+1 WHERE id=%s", (lid,))])
        return lid

    def delete_line(self) -> int | None:
        live = [lid for lid, oid in self.lines.items() if oid in self.orders]
        if not live:
            return None
        lid = self.rng.choice(live)
        self._txn([(f"DELETE FROM {self._q('order_lines')} WHERE id=%s", (lid,))])
        del self.lines[lid]
        return lid

    def delete_order(self) -> int | None:
        if not self.orders:
            return None
        oid = self.rng.choice(list(self.orders))
        self._txn([
            (f"DELETE FROM {self._q('order_lines')} WHERE order_id=%s", (oid,)),
            (f"DELETE FROM {self._q('orders')} WHERE id=%s", (oid,)),
        ])
        del self.orders[oid]
        for lid in [lid for lid, o in self.lines.items() if o == oid]:
            del self.lines[lid]
        return oid

    def soft_delete_order(self) -> int | None:
        if not self.orders:
            return None
        oid = self.rng.choice(list(self.orders))
        self._txn([(f"UPDATE {self._q('orders')} SET deleted_at=NOW() WHERE id=%s", (oid,))])
        del self.orders[oid]  # out of the bridge's view (the mapping filters soft-deleted orders)
        return oid

    def big_transaction(self, n_orders: int = 1000) -> None:
        """One transaction with thousands of rows: n orders with 1-4 lines each."""
        orders, lines = [], []
        for _ in range(n_orders):
            oid = self.next_order_id
            self.next_order_id += 1
            orders.append((oid, self.rng.randint(1, 1000), "1.00"))
            lines.extend(self._line_rows(oid, self.rng.randint(1, 4)))
            self.orders[oid] = "pending"
        self._txn([(self._insert_order(), orders), (self._insert_lines(), lines)])

    def step(self) -> str:
        """One random monolith action; returns its name."""
        op = pick_step(self.rng)
        getattr(self, op)()
        self.counts[op] = self.counts.get(op, 0) + 1
        return op
