"""Records what Debezium publishes for workload.json (how debezium-3.5.0-mariadb.jsonl was made; README.md).

    javac -cp "$DBZ/target/dependency/*" -d /tmp/capture tests/data/debezium/Capture.java
    .venv/bin/python tests/data/debezium/record.py --debezium "$DBZ" --classes /tmp/capture --out records.jsonl

$DBZ: a built copy of the Debezium peer (debezium-connector-mariadb 3.5.0.Final, `BENCH_BUILD_ONLY=1 ./run.sh`).
Creates the database dbz_golden on the devenv MariaDB (127.0.0.1:33306, cdc/cdc), writes the snapshot rows,
starts Capture (Debezium's embedded engine), waits for the snapshot records, writes the stream transactions
one per second, then stops Capture.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).resolve().parent


def run(sql_conn, statements: list[str], db: str) -> None:
    with sql_conn.cursor() as cur:
        cur.execute("BEGIN")
        for s in statements:
            cur.execute(s.replace("{db}", db))
        cur.execute("COMMIT")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--debezium", required=True, help="the built Debezium peer directory (target/dependency)")
    ap.add_argument("--classes", required=True, help="where Capture.class is")
    ap.add_argument("--out", required=True)
    ap.add_argument("--db", default="dbz_golden")
    ap.add_argument("--port", type=int, default=33306)
    ap.add_argument("--snapshot-records", type=int, default=5, help="rows of workload.json's snapshot part")
    args = ap.parse_args()
    work = json.loads((HERE / "workload.json").read_text())
    out = Path(args.out).resolve()
    stop = out.parent / "STOP"
    for f in (out, stop):
        f.unlink(missing_ok=True)
    conn = pymysql.connect(host="127.0.0.1", port=args.port, user="cdc", password="cdc", charset="utf8mb4",
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"DROP DATABASE IF EXISTS `{args.db}`")
        cur.execute(f"CREATE DATABASE `{args.db}`")
        for s in work["schema"]:
            cur.execute(s.replace("{db}", args.db))
    for txn in work["snapshot"]:
        run(conn, txn, args.db)
    cp = f"{args.classes}{os.pathsep}{Path(args.debezium) / 'target' / 'dependency'}/*"
    proc = subprocess.Popen(["java", "-cp", cp, "Capture", str(out), str(args.port), "cdc", "cdc", args.db, "dbzgold"],
                            stderr=open(out.parent / "capture.log", "w"))

    def count() -> int:
        return len(out.read_text().splitlines()) if out.exists() else 0

    deadline = time.time() + 180
    while count() < args.snapshot_records and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(5)
    for txn in work["stream"]:
        run(conn, txn, args.db)
        time.sleep(1.1)
    time.sleep(8)
    stop.touch()
    proc.wait(60)
    print(f"{count()} records in {out}")


if __name__ == "__main__":
    main()
