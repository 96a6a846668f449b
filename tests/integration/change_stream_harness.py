"""Shared by the change stream tests: the golden workload (tests/data/debezium/), its mappings, the topics."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

WORKLOAD = Path(__file__).resolve().parents[1] / "data" / "debezium" / "workload.json"


def golden_workload() -> dict:
    return json.loads(WORKLOAD.read_text(encoding="utf-8"))


def run_transactions(conn, transactions: list[list[str]], db: str) -> None:
    """Each list of statements as one transaction, in a UTC session (as the golden records were written)."""
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for statements in transactions:
            cur.execute("BEGIN")
            for s in statements:
                cur.execute(s.replace("{db}", db))
            cur.execute("COMMIT")


def write_golden_mappings(directory: Path, db: str) -> None:
    """One aggregate per table of the workload, each mapping a few columns only: the change stream still
    carries every column."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = {
        "all_types": {"aggregate": "AllTypes", "root": {"table": f"{db}.all_types", "id": "id",
                                                         "fields": {"id": None, "c_int": None}}},
        "composite": {"aggregate": "Composite", "root": {"table": f"{db}.composite", "id": ["num", "region"],
                                                          "fields": {"num": None, "region": None, "note": None}}},
        "nopk": {"aggregate": "Nopk", "root": {"table": f"{db}.nopk", "id": "code", "fields": {"code": None}}},
    }
    for name, doc in docs.items():
        doc["topic"] = f"{db}.{name}.events"
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def change_topics(prefix: str, db: str, tables: tuple[str, ...], transaction_topic: bool = True) -> list[str]:
    return [f"{prefix}.{db}.{t}" for t in tables] + ([f"{prefix}.transaction"] if transaction_topic else [])


# ---------------------------------------------------------------- the orders workload's change stream

def write_line_mapping(directory: Path, db: str) -> None:
    """A second aggregate over order_lines (the Order aggregate has them as children): the table is mapped
    twice, its row changes must still be streamed once."""
    doc = {"aggregate": "Line", "topic": f"{db}.line.events",
           "root": {"table": f"{db}.order_lines", "id": "id", "fields": {"id": "line_id", "sku": None}}}
    (directory / "lines.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def read_changes(topic: str) -> list[dict]:
    """The records of a change topic (read_committed), key parsed, in partition/offset order."""
    import bridge_harness as h

    out = []
    for r in sorted(h.read_topic(topic, timeout=60), key=lambda r: (r["partition"], r["offset"])):
        out.append({**r, "key": json.loads(r["key"]) if r["key"] is not None else None})
    return out


def _order(record: dict) -> tuple:
    s = record["value"]["source"]
    if s["gtid"] is None:   # snapshot rows come first
        return (-1, 0, 0)
    return (int(s["gtid"].rsplit("-", 1)[1]), s["pos"], s["row"])


def check_once_in_order(records: list[dict]) -> None:
    """No change event twice; per key in binlog order; a tombstone right after every delete of the key."""
    seen: dict[tuple, int] = {}
    by_key: dict[str, list[dict]] = {}
    for r in records:
        by_key.setdefault(json.dumps(r["key"], sort_keys=True), []).append(r)
        v = r["value"]
        if v is None:
            continue
        ident = (_order(r), v["op"], json.dumps(r["key"], sort_keys=True))
        assert ident not in seen, f"change event published twice: {ident}"
        seen[ident] = 1
    for key, rs in by_key.items():
        assert len({r["partition"] for r in rs}) == 1, f"key {key} in several partitions"
        changes = [r for r in rs if r["value"] is not None]
        orders = [_order(r) for r in changes]
        assert orders == sorted(orders), f"key {key}: not in binlog order: {orders}"
        for i, r in enumerate(rs):
            if r["value"] is not None and r["value"]["op"] == "d":
                assert i + 1 < len(rs) and rs[i + 1]["value"] is None, f"key {key}: no tombstone after the delete"


def check_transactions(changes: list[dict], transaction_records: list[dict]) -> None:
    """Each source transaction's change events are all there: as many as its END record counts."""
    per_txn: dict[str, int] = {}
    for r in changes:
        v = r["value"]
        if v is not None and v["transaction"] is not None:
            assert v["transaction"]["id"] == v["source"]["gtid"]
            per_txn[v["transaction"]["id"]] = per_txn.get(v["transaction"]["id"], 0) + 1
    ends = {r["value"]["id"]: r["value"]["event_count"] for r in transaction_records if r["value"]["status"] == "END"}
    begins = [r["value"]["id"] for r in transaction_records if r["value"]["status"] == "BEGIN"]
    assert len(begins) == len(set(begins)) == len(ends), "BEGIN/END records twice or missing"
    assert per_txn == ends, {t: (per_txn.get(t), ends.get(t)) for t in set(per_txn) | set(ends)
                             if per_txn.get(t) != ends.get(t)}


def fold(records: list[dict]) -> dict[str, dict]:
    """The rows the change events describe at the end: key -> last after image (deleted rows gone)."""
    rows: dict[str, dict] = {}
    for r in records:
        v = r["value"]
        if v is None:
            continue
        key = json.dumps(r["key"], sort_keys=True)
        if v["op"] == "d":
            rows.pop(key, None)
        else:
            rows[key] = v["after"]
    return rows


def orders_tables_in_db(conn, db: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """orders and order_lines as the change stream writes them (key JSON -> a few columns)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, status, total, customer_id, deleted_at IS NULL FROM `{db}`.orders")
        orders = {json.dumps({"id": i}): (s, str(t), c, live) for i, s, t, c, live in cur.fetchall()}
        cur.execute(f"SELECT id, order_id, sku, quantity, unit_price FROM `{db}`.order_lines")
        lines = {json.dumps({"id": i}): (o, s, q, str(p)) for i, o, s, q, p in cur.fetchall()}
    return orders, lines


def folded_orders(records: dict[str, list[dict]], db: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    orders = {k: (a["status"], a["total"], a["customer_id"], a["deleted_at"] is None)
              for k, a in fold(records[f"{db}.orders"]).items()}
    lines = {k: (a["order_id"], a["sku"], a["quantity"], a["unit_price"])
             for k, a in fold(records[f"{db}.order_lines"]).items()}
    return orders, lines


def check_orders_stream(prefix: str, conn, db: str) -> dict[str, list[dict]]:
    """The whole check of an orders workload's change stream; returns table -> records."""
    records = {t: read_changes(f"{prefix}.{t}") for t in (f"{db}.orders", f"{db}.order_lines")}
    for rs in records.values():
        check_once_in_order(rs)
    check_transactions([r for rs in records.values() for r in rs], read_changes(f"{prefix}.transaction"))
    assert folded_orders(records, db) == orders_tables_in_db(conn, db)
    return records
