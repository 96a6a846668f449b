"""Issue 18's contracts against the real MariaDB: what `cdc-bridge schemas --config` derives from the columns
describes the events the bridge really publishes (MariaDB's JSON, ENUM members with quotes and backslashes, the
invalid ENUM value ''), and the guard compares a live set with a live one and an offline set with an offline one."""

from __future__ import annotations

import pytest
import yaml

import bridge_harness as h
from cdc_bridge import cli
from cdc_bridge.contracts import schema_set_for
from cdc_bridge.mapping.loader import load_mappings
from devenv import mariadb


@pytest.fixture(autouse=True)
def _logging_as_before():
    """cli.main configures logging onto this test's captured stderr, which pytest closes afterwards: put back
    what the rest of the session logs with (as tests/unit/test_cli.py does)."""
    import logging

    import structlog

    saved, handlers = structlog.get_config(), list(logging.getLogger().handlers)
    yield
    structlog.configure(**saved)
    logging.getLogger().handlers = handlers


def test_events_of_json_and_enum_columns_match_the_live_schemas(fresh_db, tmp_path, capsys):
    db = fresh_db
    conn = h.connect_db(mariadb.connection_settings())
    with conn.cursor() as cur:
        # MariaDB's JSON: a LONGTEXT with CHECK (json_valid(body)); ENUM members "it's" and "a\b"
        cur.execute(f"CREATE TABLE `{db}`.docs (id BIGINT PRIMARY KEY, body JSON NULL, "
                    "kind ENUM('it''s', 'a\\\\b', 'plain') NOT NULL DEFAULT 'plain', note LONGTEXT NULL)")
    topic = f"{db}.doc.events"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "docs.yaml").write_text(yaml.safe_dump({
        "aggregate": "Doc", "topic": topic,
        "root": {"table": f"{db}.docs", "id": "id", "fields": {"id": None, "body": None, "kind": None, "note": None}}},
        sort_keys=False))
    cfg = h.bridge_config(tmp_path, db)
    mappings = load_mappings(tmp_path / "mappings")
    data = schema_set_for(mappings, mariadb.connection_settings()).events["Doc"]["DocCreated"]["properties"]["data"]
    assert data["properties"]["body"] == {}   # any JSON value, not {"type": "string"}
    assert data["properties"]["kind"] == {"type": "string", "enum": ["", "it's", "a\\b", "plain"]}

    bridge = h.BridgeThread(cfg).start()
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{db}`.docs VALUES (1, '{{\"a\": [1, 2.5, \"x\", true, null]}}', 'it''s', 'n')")
            cur.execute(f"INSERT INTO `{db}`.docs (id, body, kind) VALUES (2, '[]', 'a\\\\b')")
            cur.execute("SET SESSION sql_mode = ''")   # non-strict: an unknown member is stored as index 0 ('')
            cur.execute(f"INSERT INTO `{db}`.docs (id, body, kind) VALUES (3, NULL, 'no such member')")
        bridge.wait_position(conn)
    finally:
        bridge.stop()
        conn.close()

    events = h.events_of(h.read_topic(topic))
    by_id = {e["aggregate_id"]: e["data"] for e in events}
    assert by_id["1"]["body"] == {"a": [1, 2.5, "x", True, None]} and by_id["1"]["kind"] == "it's"
    assert by_id["2"]["body"] == [] and by_id["2"]["kind"] == "a\\b"
    assert by_id["3"]["body"] is None and by_id["3"]["kind"] == ""
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events) == 3

    # the guard: an offline set checked with --config compares offline; a live one without a connection warns
    config = str(h.write_config(tmp_path, cfg))
    off, live = tmp_path / "off", tmp_path / "live"
    assert cli.main(["schemas", "--mappings", str(tmp_path / "mappings"), "--out", str(off)]) == 0
    assert cli.main(["schemas", "--config", config, "--out", str(live)]) == 0
    capsys.readouterr()
    assert cli.main(["schemas", "--config", config, "--check-against", str(off)]) == 0
    assert "type narrowed" not in capsys.readouterr().out
    assert cli.main(["schemas", "--config", config, "--check-against", str(live)]) == 0
    assert "(live schemas compared)" in capsys.readouterr().out
    assert cli.main(["check", "--mappings", str(tmp_path / "mappings"), "--schemas", str(live)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: " in out and "`auto` fields are not compared" in out and "Doc data.kind: typed" in out
