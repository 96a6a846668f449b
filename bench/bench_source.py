"""Binlog source throughput: BinlogSource vs a plain python-mysql-replication loop.

    python -m devenv up mariadb
    .venv/bin/python bench/bench_source.py --rows 200000 [--json bench/results/source.json]

Writes >= --rows row changes (orders + order_lines in a dedicated database; multi-row
INSERTs via executemany, UPDATEs and DELETEs, several statements per transaction),
then reads that same binlog range twice and prints rows/s for

  (a) plain:  BinLogStreamReader, `for ev in stream: for row in ev.rows: pass`
  (b) source: BinlogSource.transactions(), fully normalized RowChanges

and the ratio b/a. Both read from the same start GTID to the same end GTID, with
the same schema filter, after the binlog is in the page cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pymysql  # noqa: E402
import structlog  # noqa: E402

# the readers are shared with bench/run.py; re-exported here for anything that imported them from this file
from bench.common import end_gtid_reached, run_plain, run_source  # noqa: E402,F401
from cdc_bridge.source import SourceSettings  # noqa: E402
from cdc_bridge.source.preflight import current_position  # noqa: E402

SCHEMA = """
CREATE TABLE {db}.orders (
  id          BIGINT PRIMARY KEY,
  customer_id BIGINT NOT NULL,
  status      ENUM('pending','paid','shipped','cancelled') NOT NULL DEFAULT 'pending',
  total       DECIMAL(12,2) NOT NULL DEFAULT 0,
  currency    CHAR(3) NOT NULL DEFAULT 'EUR',
  created_at  DATETIME(6) NOT NULL,
  deleted_at  DATETIME NULL,
  note        TEXT NULL
) ENGINE=InnoDB;
CREATE TABLE {db}.order_lines (
  id          BIGINT PRIMARY KEY,
  order_id    BIGINT NOT NULL,
  sku         VARCHAR(64) NOT NULL,
  quantity    INT NOT NULL,
  unit_price  DECIMAL(12,2) NOT NULL,
  KEY ix_order_lines_order (order_id)
) ENGINE=InnoDB
"""

ORDERS_PER_TXN = 50
LINES_PER_ORDER = 3
# per transaction: 50 order inserts + 150 line inserts + 50 order updates + 50 line updates + 25 line deletes
ROWS_PER_TXN = ORDERS_PER_TXN * (1 + LINES_PER_ORDER + 1 + 1) + ORDERS_PER_TXN // 2


def generate(conn: pymysql.connections.Connection, db: str, rows: int) -> int:
    """Write at least `rows` row changes; returns how many were written."""
    rnd = random.Random(42)
    written = 0
    order_id = 0
    line_id = 0
    with conn.cursor() as cur:
        while written < rows:
            cur.execute("BEGIN")
            first_order, first_line = order_id + 1, line_id + 1
            orders = []
            lines = []
            for _ in range(ORDERS_PER_TXN):
                order_id += 1
                orders.append((order_id, rnd.randint(1, 10_000), f"{rnd.randint(100, 999_999) / 100:.2f}",
                               "2024-03-01 12:34:56.123456", rnd.choice([None, "gift wrap", "leave at door"])))
                for _ in range(LINES_PER_ORDER):
                    line_id += 1
                    lines.append((line_id, order_id, f"SKU-{rnd.randint(1, 5000):05d}", rnd.randint(1, 9),
                                  f"{rnd.randint(100, 99_999) / 100:.2f}"))
            cur.executemany(f"INSERT INTO {db}.orders (id, customer_id, total, created_at, note) "
                            f"VALUES (%s, %s, %s, %s, %s)", orders)
            cur.executemany(f"INSERT INTO {db}.order_lines (id, order_id, sku, quantity, unit_price) "
                            f"VALUES (%s, %s, %s, %s, %s)", lines)
            cur.execute(f"UPDATE {db}.orders SET status = 'paid', total = total + 1 "
                        f"WHERE id BETWEEN %s AND %s", (first_order, order_id))
            cur.execute(f"UPDATE {db}.order_lines SET quantity = quantity + 1 "
                        f"WHERE id BETWEEN %s AND %s AND id %% 3 = 0", (first_line, line_id))
            cur.execute(f"DELETE FROM {db}.order_lines WHERE id BETWEEN %s AND %s AND id %% 6 = 1",
                        (first_line, line_id))
            cur.execute("COMMIT")
            written += ROWS_PER_TXN
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="row changes to generate (default 200000)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON to PATH")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("CDC_TEST_MYSQL_PORT", "33306")))
    parser.add_argument("--user", default="cdc")
    parser.add_argument("--password", default="cdc")
    parser.add_argument("--db", default="bench_source")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the source run into PATH")
    parser.add_argument("--keep", action="store_true", help="keep the bench database (default: drop it)")
    args = parser.parse_args(argv)
    # the source logs its table maps at debug level: keep the figures readable
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

    conn_settings = {"host": args.host, "port": args.port, "user": args.user, "password": args.password}
    conn = pymysql.connect(**conn_settings, autocommit=True, charset="utf8mb4")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{args.db}`")
        cur.execute(f"CREATE DATABASE `{args.db}`")
        for stmt in SCHEMA.format(db=args.db).split(";"):
            cur.execute(stmt)
    start = current_position(conn, "mariadb")
    t0 = time.perf_counter()
    written = generate(conn, args.db, args.rows)
    gen_s = time.perf_counter() - t0
    end = current_position(conn, "mariadb")
    conn.close()
    print(f"generated {written} row changes in {gen_s:.1f}s; range {start.gtid} .. {end.gtid}")

    plain_rows, plain_s = run_plain(conn_settings, args.db, start, end.gtid or "")
    print(f"(a) plain python-mysql-replication: {plain_rows} rows in {plain_s:.2f}s = {plain_rows / plain_s:,.0f} rows/s")

    settings = SourceSettings(host=args.host, port=args.port, user=args.user, password=args.password,
                              server_id=random.randint(200_001, 300_000))
    if args.profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    src_rows, src_s = run_source(settings, args.db, start, end.gtid or "")
    if args.profile:
        prof.disable()
        prof.dump_stats(args.profile)
    print(f"(b) BinlogSource:                   {src_rows} rows in {src_s:.2f}s = {src_rows / src_s:,.0f} rows/s")
    ratio = (src_rows / src_s) / (plain_rows / plain_s)
    print(f"ratio b/a = {ratio:.2f}")
    if plain_rows != src_rows:
        print(f"WARNING: row counts differ (plain {plain_rows}, source {src_rows})")

    if not args.keep:
        with pymysql.connect(**conn_settings, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{args.db}`")

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "rows_generated": written,
            "plain": {"rows": plain_rows, "seconds": round(plain_s, 3), "rows_per_s": round(plain_rows / plain_s)},
            "source": {"rows": src_rows, "seconds": round(src_s, 3), "rows_per_s": round(src_rows / src_s)},
            "ratio": round(ratio, 3),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
