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
