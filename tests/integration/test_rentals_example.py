"""Issue 16 on real MariaDB and Kafka, with examples/rentals/: a table in two aggregates, several
transitions on one update, a column added later (optional), GEOMETRY as GeoJSON, YEAR 0000, and the
snapshot of existing rows carrying its GTID."""

from __future__ import annotations

from pathlib import Path

import bridge_harness as h
from devenv import mariadb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rentals"


def _setup(db: str, tmp_path: Path) -> dict[str, str]:
    """The example's schema and mappings on database `db`; returns aggregate -> events topic."""
    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        text = "\n".join(x for x in (EXAMPLE / "schema.sql").read_text().splitlines() if not x.strip().startswith("--"))
        for stmt in text.split(";"):
            sql = stmt.strip()
            if sql and not sql.upper().startswith("CREATE DATABASE"):
                cur.execute(sql.replace("rentals.", f"`{db}`."))
    (tmp_path / "mappings").mkdir()
    topics = {}
    for f in sorted((EXAMPLE / "mappings").glob("*.yaml")):
        text = f.read_text().replace("rentals.", f"{db}.")
        (tmp_path / "mappings" / f.name).write_text(text)
        topics[f.stem] = f"{db}.{f.stem}.events"
    return topics


def _events(topic: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in h.events_of(h.read_topic(topic)):
        out.setdefault(e["aggregate_id"], []).append(e)
    return out


def test_rentals_example_end_to_end(fresh_db, tmp_path):
    db = fresh_db
    topics = _setup(db, tmp_path)
    conn = mariadb.admin_connect()
    with conn.cursor() as cur:   # existing rows: the snapshot reads them
        cur.execute(f"INSERT INTO `{db}`.film VALUES (1, 'Alien', 'R', 2.99, 1979), (2, 'Lost reel', 'G', 0.99, 0)")
        cur.execute(f"INSERT INTO `{db}`.store VALUES (1, 'Lyon', ST_GeomFromText('POINT(4.83 45.76)'))")
    cfg = h.bridge_config(tmp_path, db, held={"max_age_seconds": 100000, "max_count": 100000})
    bridge = h.BridgeThread(cfg).start()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO `{db}`.customer VALUES (7, 'Ada', 1)")
        cur.execute(f"INSERT INTO `{db}`.inventory VALUES (55, 1, 1)")             # a copy of film 1
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO `{db}`.rental VALUES (100, 7, 55, 1, 'out')")
        cur.execute(f"INSERT INTO `{db}`.payment VALUES (1000, 7, 100, 2.99)")
        cur.execute("COMMIT")
        cur.execute(f"INSERT INTO `{db}`.payment VALUES (1001, 7, NULL, 5.00)")      # a late fee: no rental
        cur.execute(f"UPDATE `{db}`.film SET rating = 'NC-17', rental_rate = 3.49 WHERE film_id = 1")
        cur.execute(f"ALTER TABLE `{db}`.film ADD COLUMN promo_code VARCHAR(10) NULL")
        cur.execute(f"UPDATE `{db}`.film SET promo_code = 'SCARY', rental_rate = 1.99 WHERE film_id = 1")
        cur.execute(f"UPDATE `{db}`.film SET title = 'Alien (cut)' WHERE film_id = 1")
        cur.execute(f"UPDATE `{db}`.rental SET status = 'returned' WHERE rental_id = 100")
    bridge.wait_position(conn, timeout=60)
    bridge.stop()

    films = _events(topics["film"])
    alien, lost = films["1"], films["2"]
    assert [e["event_type"] for e in alien] == ["FilmSnapshotted", "FilmRerated", "FilmRepriced", "FilmRepriced",
                                                "FilmUpdated"]
    assert alien[0]["data"]["promo_code"] is None and alien[0]["data"]["release_year"] == 1979
    assert alien[1]["source"]["txn_id"] == alien[2]["source"]["txn_id"]            # one update, two events
    assert alien[1]["data"]["changes"] == {"rating": {"from": "R", "to": "NC-17"},
                                           "rental_rate": {"from": "2.99", "to": "3.49"}}
    assert alien[3]["data"]["promo_code"] == "SCARY"                               # the column came later
    assert lost[0]["data"]["release_year"] == 0                                     # YEAR 0000, not null
    snap = alien[0]["source"]
    assert snap["gtid"] is not None and snap["txn_id"] == snap["gtid"]

    [store] = _events(topics["store"])["1"]
    assert store["data"]["location"] == {"type": "Point", "coordinates": [4.83, 45.76]}

    [rental_created, returned] = _events(topics["rental"])["100"]
    assert rental_created["event_type"] == "RentalCreated"
    assert [p["payment_id"] for p in rental_created["data"]["payments"]] == [1000]
    # lookups: rental -> inventory (streamed) -> film (read by the snapshot), as of each source transaction
    assert (rental_created["data"]["film_id"], rental_created["data"]["film_title"]) == (1, "Alien")
    assert returned["event_type"] == "RentalReturned" and returned["data"]["film_title"] == "Alien (cut)"
    assert returned["data"]["changes"]["film_title"] == {"from": "Alien", "to": "Alien (cut)"}
    customer = _events(topics["customer"])["7"]
    assert [e["event_type"] for e in customer] == ["CustomerCreated", "CustomerPaymentAdded", "CustomerPaymentAdded"]
    assert [e["data"]["payment_id"] for e in customer[1:]] == [1000, 1001]
    assert customer[2]["data"]["rental_id"] is None
    dead = [r["value"] for r in h.read_topic(f"{cfg['name']}.dead-letter")]
    assert dead == [], dead
    # issue 18: every event matches the schema `cdc-bridge schemas` derives from the mappings and the columns
    every = [e for t in topics.values() for evs in _events(t).values() for e in evs]
    settings = mariadb.connection_settings()
    assert h.validate_events(every, tmp_path / "mappings", settings) == len(every) > 10


def test_lookups_give_the_same_events_with_aggregate_workers(fresh_db, tmp_path):
    """Issue 16: reference rows reach every partition of the commands topic, so ingest + 2 workers enrich
    exactly like the embedded bridge."""
    import uuid

    from scale_harness import Cluster

    db = fresh_db
    (tmp_path / "base").mkdir()
    topics = _setup(db, tmp_path / "base")
    conn = mariadb.admin_connect()
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO `{db}`.film VALUES (1, 'Alien', 'R', 2.99, 1979), (2, 'Heat', 'R', 1.99, 1995)")
        cur.execute(f"INSERT INTO `{db}`.inventory VALUES (55, 1, 1), (56, 2, 1)")
    clusters = {}
    for mode in ("emb", "wrk"):
        d = tmp_path / mode
        (d / "mappings").mkdir(parents=True)
        for f in (tmp_path / "base" / "mappings").glob("*.yaml"):
            (d / "mappings" / f.name).write_text(f.read_text().replace(".events", f".events.{mode}"))
        cfg = h.bridge_config(d, db, held={"max_age_seconds": 100000, "max_count": 100000})
        cfg["name"] = f"lk-{mode}-{uuid.uuid4().hex[:6]}"
        clusters[mode] = Cluster(d, cfg, h.write_config(d, cfg))
    try:
        clusters["emb"].run_embedded()
        clusters["wrk"].ingest()
        clusters["wrk"].worker(1)
        clusters["wrk"].worker(2)
        clusters["emb"].wait_caught_up(conn, workers=False)
        clusters["wrk"].wait_caught_up(conn, workers=True)
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{db}`.customer VALUES (7, 'Ada', 1)")
            for r in range(100, 120):
                cur.execute(f"INSERT INTO `{db}`.rental VALUES ({r}, 7, {55 + r % 2}, 1, 'out')")
            cur.execute(f"UPDATE `{db}`.film SET title = 'Heat (1995)' WHERE film_id = 2")
            cur.execute(f"UPDATE `{db}`.inventory SET film_id = 1 WHERE inventory_id = 56")
            for r in range(100, 120):
                cur.execute(f"UPDATE `{db}`.rental SET status = 'returned' WHERE rental_id = {r}")
        clusters["emb"].wait_caught_up(conn, workers=False)
        clusters["wrk"].wait_caught_up(conn, workers=True)
    finally:
        for c in clusters.values():
            c.stop_all()
    emb = _events(topics["rental"] + ".emb")
    wrk = _events(topics["rental"] + ".wrk")
    assert emb == wrk and len(emb) == 20
    titles = {e["data"]["film_title"] for evs in emb.values() for e in evs}
    assert titles == {"Alien", "Heat"}   # created: as then; returned: copy 56 now holds film 1
    assert {evs[1]["data"]["film_title"] for evs in emb.values()} == {"Alien"}
