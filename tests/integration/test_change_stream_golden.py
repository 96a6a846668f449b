"""The change stream against real Debezium: the records Debezium 3.5.0 published for tests/data/debezium/
workload.json (recorded once, see the README there) and the bridge's records for the same workload, replayed
here on a fresh database, compared field by field. What may differ, and why, is docs/events.md's list:
the processing times, version, the topic prefix and database name (ours are the test's), the GTIDs and
binlog offsets (another run on the same server), the BEGIN record's ts_ms, and the snapshot markers
first_in_data_collection / last_in_data_collection. Binlog offsets are not ignored: each `pos` must be
where a row event of our own run starts (SHOW BINLOG EVENTS)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest

import bridge_harness as h
from cdc_bridge.config import BridgeConfig
from cdc_bridge.contracts.change_schemas import change_schemas
from change_stream_harness import change_topics, golden_workload, run_transactions, write_golden_mappings

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "debezium" / "debezium-3.5.0-mariadb.jsonl"
GOLDEN_DB, GOLDEN_PREFIX = "dbz_golden", "dbzgold"
TABLES = ("all_types", "composite", "nopk")


def golden_records() -> list[dict]:
    out = []
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out.append({"topic": r["topic"], "key": r["key"], "value": r["value"],
                    "headers": {k: v for k, v in r["headers"].items() if not k.startswith("__debezium.context.")}})
    return out


def ours(prefix: str, db: str) -> list[dict]:
    """Our records of every change topic, per partition in offset order, keys parsed, topics named like the golden."""
    out = []
    for topic in change_topics(prefix, db, TABLES):
        for r in h.read_topic(topic):
            headers = {k: json.loads(v) for k, v in r["headers"].items()}
            out.append({"topic": topic.replace(f"{prefix}.{db}.", f"{GOLDEN_PREFIX}.{GOLDEN_DB}.")
                        .replace(f"{prefix}.transaction", f"{GOLDEN_PREFIX}.transaction"),
                        "key": json.loads(r["key"]) if r["key"] is not None else None, "value": r["value"],
                        "headers": headers, "partition": r["partition"]})
    return out


def by_key(records: list[dict]) -> dict[tuple, list[dict]]:
    """topic + key -> records in order (the order Kafka keeps: per key); the transaction topic by status order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[(r["topic"], json.dumps(r["key"], sort_keys=True))].append(r)
    return out


def row_event_starts(conn, files: set[str]) -> set[tuple[str, int]]:
    starts = set()
    with conn.cursor() as cur:
        for f in files:
            cur.execute(f"SHOW BINLOG EVENTS IN '{f}'")
            starts.update((f, int(r[1])) for r in cur.fetchall() if str(r[2]).split("_v")[0] in
                          ("Write_rows", "Update_rows", "Delete_rows"))
    return starts


def compare_change(mine: dict, gold: dict, db: str, prefix: str) -> None:
    """One change event (or tombstone) of ours against Debezium's."""
    where = f"{gold['topic']} key {gold['key']}"
    assert mine["key"] == gold["key"], where
    assert mine["headers"] == gold["headers"], where
    if gold["value"] is None:
        assert mine["value"] is None, f"{where}: a tombstone expected"
        return
    m, g = mine["value"], gold["value"]
    assert list(m) == list(g), f"{where}: envelope fields"
    assert m["op"] == g["op"], where
    for image in ("before", "after"):
        if g[image] is None:
            assert m[image] is None, f"{where} {image}"
            continue
        assert list(m[image]) == list(g[image]), f"{where} {image}: columns (and their order)"
        for col, value in g[image].items():
            assert m[image][col] == value, f"{where} {image}.{col}: bridge {m[image][col]!r}, Debezium {value!r}"
    ms, gs = m["source"], g["source"]
    assert list(ms) == list(gs), f"{where}: source fields"
    same = ("connector", "sequence", "table", "server_id", "row", "thread", "query")
    assert {k: ms[k] for k in same} == {k: gs[k] for k in same}, where
    assert ms["name"] == prefix and ms["db"] == db, where
    assert ms["ts_us"] == ms["ts_ms"] * 1000 and ms["ts_ns"] == ms["ts_ms"] * 1_000_000, where
    assert m["ts_us"] // 1000 == m["ts_ms"] and m["ts_ns"] // 1000 == m["ts_us"], where
    marks = {"first_in_data_collection": "true", "last_in_data_collection": "true", "first": "true", "last": "true"}
    assert marks.get(ms["snapshot"], ms["snapshot"]) == marks.get(gs["snapshot"], gs["snapshot"]), where
    if g["op"] == "r":
        assert ms["gtid"] is None and m["transaction"] is None and g["transaction"] is None, where
        return
    assert ms["gtid"] and ms["file"].startswith("mysql-bin."), where
    mt, gt = m["transaction"], g["transaction"]
    assert mt["id"] == ms["gtid"], where
    assert (mt["total_order"], mt["data_collection_order"]) == (gt["total_order"], gt["data_collection_order"]), where


@pytest.mark.timeout(240)
@pytest.mark.parametrize("reader", ["process", "inline"])
def test_the_change_stream_matches_debezium_field_by_field(reader, fresh_db, admin_db, tmp_path):
    work = golden_workload()
    with admin_db.cursor() as cur:
        for statement in work["schema"]:
            cur.execute(statement.replace("{db}", fresh_db))
        # the bridge's snapshot pages by a unique key; Debezium's key is the primary key alone, so this
        # leaves its records as recorded (nopk: key null)
        cur.execute(f"ALTER TABLE `{fresh_db}`.nopk ADD UNIQUE KEY (code)")
    run_transactions(admin_db, work["snapshot"], fresh_db)
    write_golden_mappings(tmp_path / "mappings", fresh_db)
    prefix = f"cs-{fresh_db}"
    cfg = h.bridge_config(tmp_path, fresh_db, change_stream={"enabled": True, "topic_prefix": prefix},
                          source={"reader": reader})
    bridge = h.BridgeThread(cfg).start()
    try:
        run_transactions(admin_db, work["stream"], fresh_db)
        bridge.wait_position(admin_db)
    finally:
        bridge.stop()

    gold, mine = golden_records(), ours(prefix, fresh_db)
    gold_tx = [r for r in gold if r["topic"].endswith(".transaction")]
    mine_tx = [r for r in mine if r["topic"].endswith(".transaction")]
    gold_ch, mine_ch = by_key([r for r in gold if r not in gold_tx]), by_key([r for r in mine if r not in mine_tx])
    assert sorted(mine_ch) == sorted(gold_ch)
    for k, golds in gold_ch.items():
        assert len(mine_ch[k]) == len(golds), f"{k}: {len(mine_ch[k])} records, Debezium {len(golds)}"
        for m, g in zip(mine_ch[k], golds):
            compare_change(m, g, fresh_db, prefix)

    # snapshot markers: one first, one last (Debezium also marks each table's first and last)
    snap = [r["value"]["source"]["snapshot"] for r in mine if r["value"] and r["value"].get("op") == "r"]
    assert sorted(snap) == ["first", "last", "true", "true", "true"]

    # pos: where a row event of this run starts; rows of one event share it
    streamed = [r["value"]["source"] for r in mine if r["value"] and r["value"].get("op") in ("c", "u", "d")]
    starts = row_event_starts(admin_db, {s["file"] for s in streamed})
    assert all((s["file"], s["pos"]) in starts for s in streamed), streamed

    # the transaction topic: BEGIN/END per source transaction with the same counts
    def summary(records: list[dict]) -> list[tuple]:
        return [(r["value"]["status"], r["value"]["event_count"],
                 sorted((d["data_collection"].split(".")[1], d["event_count"]) for d in r["value"]["data_collections"] or []))
                for r in records]

    assert summary(mine_tx) == summary(gold_tx)
    gtids = sorted({s["gtid"] for s in streamed}, key=lambda g: int(g.rsplit("-", 1)[1]))   # MariaDB d-s-n
    assert [r["value"]["id"] for r in mine_tx] == [g for g in gtids for _ in ("BEGIN", "END")]
    assert all(r["key"] == {"id": r["value"]["id"]} for r in mine_tx)

    # the contract (`cdc-bridge schemas` with the database's columns) describes every record, ours and Debezium's
    src = cfg["source"]
    contract = change_schemas(BridgeConfig.model_validate(cfg), frozenset(f"{fresh_db}.{t}" for t in TABLES),
                              {k: src[k] for k in ("host", "port", "user", "password")})
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validators = {}
    for table, entry in contract.items():
        topic = entry["topic"].replace(f"{prefix}.{fresh_db}.", f"{GOLDEN_PREFIX}.{GOLDEN_DB}.").replace(
            f"{prefix}.transaction", f"{GOLDEN_PREFIX}.transaction")
        validators[topic] = tuple(jsonschema.Draft202012Validator(entry[p], format_checker=checker)
                                  for p in ("key", "value"))
    typed = contract[f"{fresh_db}.all_types"]["value"]["anyOf"][0]["properties"]["after"]["anyOf"][0]
    assert len(typed["properties"]) > 20 and all(typed["properties"].values())   # live: every column typed
    for r in mine + gold:
        key_v, value_v = validators[r["topic"]]
        for v, part in ((key_v, r["key"]), (value_v, r["value"])):
            error = jsonschema.exceptions.best_match(v.iter_errors(part))
            assert error is None, f"{r['topic']}: {error.message} at {list(error.absolute_path)}: {part}"
