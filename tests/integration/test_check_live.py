"""check_live against the real MariaDB of devenv: schema, keys, types, binlog settings, privileges.

Every test works in its own fresh database; the mapping files are the examples of mappings/
with the schema name `shop` replaced by it, written to tmp_path.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pymysql
import pytest

from cdc_bridge.mapping.check import check_live

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings"


def _ddl(db: str) -> list[str]:
    """mappings/schema.sql for database `db`, one statement each."""
    text = (EXAMPLES / "schema.sql").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    stmts = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
    return [s.replace("shop.", f"`{db}`.") for s in stmts if not s.upper().startswith("CREATE DATABASE")]


def _mappings(tmp_path: Path, db: str, edit=lambda name, text: text) -> Path:
    d = tmp_path / "mappings"
    d.mkdir()
    for src in sorted(EXAMPLES.glob("*.yaml")):
        text = src.read_text().replace("table: shop.", f"table: {db}.")
        (d / src.name).write_text(edit(src.name, text))
    return d


@pytest.fixture
def shop_db(fresh_db, admin_db):
    """fresh_db with the example tables."""
    with admin_db.cursor() as cur:
        for stmt in _ddl(fresh_db):
            cur.execute(stmt)
    return fresh_db


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@contextlib.contextmanager
def _global(admin_db, name: str, value: str):
    """SET GLOBAL for the duration of the block; the shared server is restored right after."""
    with admin_db.cursor() as cur:
        cur.execute("SELECT @@GLOBAL." + name)
        old = cur.fetchone()[0]
        cur.execute(f"SET GLOBAL {name} = %s", (value,))
        try:
            yield
        finally:
            cur.execute(f"SET GLOBAL {name} = %s", (old,))


def test_good_schema(tmp_path, shop_db, mysql_settings):
    report = check_live(_mappings(tmp_path, shop_db), mysql_settings)
    assert report.problems == [], report.render()
    assert report.ok and report.exit_code == 0
    text = report.render()
    assert f"  {shop_db}.orders -> Order root" in text and f"  {shop_db}.customer_addresses -> Customer" in text
    assert "live check against MariaDB" in text.splitlines()[-1]


def test_missing_column(tmp_path, shop_db, mysql_settings):
    d = _mappings(tmp_path, shop_db, lambda name, t: t.replace("    currency:\n", "    curency:\n"))
    report = check_live(d, mysql_settings)
    assert report.exit_code == 2
    [p] = report.errors
    assert (p.category, p.file, p.line, p.key) == ("schema", str(d / "orders.yaml"),
                                                  _line_of(d / "orders.yaml", "curency"), "root.fields.curency")
    assert f"unknown column 'curency' in {shop_db}.orders" in p.message and "did you mean 'currency'" in p.message


def test_unknown_table_and_schema(tmp_path, shop_db, mysql_settings):
    def edit(name, t):
        t = t.replace(f"table: {shop_db}.order_lines", f"table: {shop_db}.order_line")
        return t.replace(f"table: {shop_db}.customers", f"table: {shop_db}x.customers")
    d = _mappings(tmp_path, shop_db, edit)
    report = check_live(d, mysql_settings)
    assert report.exit_code == 2
    msgs = [str(p) for p in report.errors]
    assert any(f"orders.yaml:{_line_of(d / 'orders.yaml', f'table: {shop_db}.order_line')}: children[0].table: unknown table "
               f"{shop_db}.order_line (did you mean 'order_lines'" in m for m in msgs), msgs
    assert any(f"unknown schema '{shop_db}x' (did you mean '{shop_db}'" in m for m in msgs), msgs


def test_table_without_primary_key(tmp_path, shop_db, admin_db, mysql_settings):
    with admin_db.cursor() as cur:
        cur.execute(f"ALTER TABLE `{shop_db}`.order_lines DROP PRIMARY KEY")
    report = check_live(_mappings(tmp_path, shop_db), mysql_settings)
    assert report.exit_code == 2
    [err] = report.errors
    assert err.key == "children[0].table"
    assert f"{shop_db}.order_lines has no PRIMARY KEY" in err.message and "cannot be matched reliably" in err.message
    # and so the child's id is no longer known to be unique
    assert any("not covered by the primary key nor a UNIQUE key" in w.message for w in report.warnings)


def test_root_id_not_unique_is_a_warning(tmp_path, shop_db, mysql_settings):
    d = _mappings(tmp_path, shop_db, lambda name, t: t.replace("  id: id\n  fields:", "  id: customer_id\n  fields:"))
    report = check_live(d, mysql_settings)
    assert report.ok and report.exit_code == 0
    [w] = report.warnings
    assert w.key == "root.id" and "neither the primary key nor a UNIQUE key" in w.message


def test_parent_key_type_mismatch(tmp_path, shop_db, admin_db, mysql_settings):
    with admin_db.cursor() as cur:
        cur.execute(f"ALTER TABLE `{shop_db}`.order_lines MODIFY order_id INT UNSIGNED NOT NULL")
    d = _mappings(tmp_path, shop_db)
    report = check_live(d, mysql_settings)
    assert report.exit_code == 2
    [p] = report.errors
    assert (p.key, p.line) == ("children[0].parent_key.order_id", _line_of(d / "orders.yaml", "parent_key"))
    assert f"{shop_db}.order_lines.order_id is int unsigned but the root id {shop_db}.orders.id is bigint" in p.message


def test_view_is_refused(tmp_path, shop_db, admin_db, mysql_settings):
    with admin_db.cursor() as cur:
        cur.execute(f"CREATE VIEW `{shop_db}`.open_orders AS SELECT * FROM `{shop_db}`.orders")
    d = _mappings(tmp_path, shop_db, lambda n, t: t.replace(f"table: {shop_db}.orders", f"table: {shop_db}.open_orders"))
    report = check_live(d, mysql_settings)
    assert report.exit_code == 2 and "is a view" in report.errors[0].message


def test_binlog_row_image_minimal(tmp_path, shop_db, admin_db, mysql_settings):
    d = _mappings(tmp_path, shop_db)
    with _global(admin_db, "binlog_row_image", "MINIMAL"):
        report = check_live(d, mysql_settings)
    assert report.exit_code == 3
    [p] = report.errors
    assert p.category == "server" and p.message.startswith("binlog_row_image is MINIMAL, must be FULL")


def test_binlog_row_metadata_minimal(tmp_path, shop_db, admin_db, mysql_settings):
    d = _mappings(tmp_path, shop_db)
    with _global(admin_db, "binlog_row_metadata", "MINIMAL"):
        report = check_live(d, mysql_settings)
    assert report.exit_code == 3
    [p] = report.errors
    assert p.message.startswith("binlog_row_metadata is MINIMAL, must be FULL")
    assert "FAILED (exit code 3)" in report.render()


def test_user_without_replication_privileges(tmp_path, shop_db, mysql_settings):
    user, pw = f"chk_{uuid.uuid4().hex[:8]}", "chk-pw"
    # own connection with sql_log_bin=0: account changes stay out of the binlog other tests replay
    conn = pymysql.connect(**mysql_settings, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (pw,))
            cur.execute(f"GRANT SELECT ON `{shop_db}`.* TO '{user}'@'%'")
        report = check_live(_mappings(tmp_path, shop_db), {**mysql_settings, "user": user, "password": pw})
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()
    assert report.exit_code == 3, report.render()
    msgs = [p.message for p in report.errors]
    assert len(msgs) == 2
    assert msgs[0].startswith("the user lacks REPLICATION SLAVE") and msgs[1].startswith("the user lacks REPLICATION CLIENT")


def test_cannot_connect(tmp_path, services):
    report = check_live(EXAMPLES, {"host": "127.0.0.1", "port": 1, "user": "x", "password": "y"})
    assert report.exit_code == 3
    assert report.errors[0].message.startswith("cannot connect to 127.0.0.1:1 as 'x'")


def test_mapping_errors_win_but_the_server_is_still_checked(tmp_path, shop_db, mysql_settings):
    d = _mappings(tmp_path, shop_db, lambda n, t: t.replace("aggregate: Order", "aggregate: order"))
    report = check_live(d, mysql_settings)
    assert report.exit_code == 1 and report.server and report.server.startswith("MariaDB")


def test_nullable_parent_key_is_not_a_warning_when_where_drops_null_rows(tmp_path, shop_db, admin_db, mysql_settings):
    """Issue 16: the null_key warning only where NULL keys can reach the key check."""
    with admin_db.cursor() as cur:
        cur.execute(f"ALTER TABLE `{shop_db}`.order_lines MODIFY order_id BIGINT NULL")
    d = _mappings(tmp_path, shop_db)
    [w] = [p for p in check_live(d, mysql_settings).warnings if "null_key" in p.message]
    assert w.key == "children[0].parent_key.order_id"

    (tmp_path / "filtered").mkdir()
    d2 = _mappings(tmp_path / "filtered", shop_db, edit=lambda name, text: text.replace(
        "    enrich: [customer_id, status]", "    enrich: [customer_id, status]\n    where:\n      order_id: {is_null: false}")
        if name == "orders.yaml" else text)
    assert not [p for p in check_live(d2, mysql_settings).warnings if "null_key" in p.message]


def test_an_optional_field_whose_column_does_not_exist_yet_is_a_warning(tmp_path, shop_db, mysql_settings):
    d = _mappings(tmp_path, shop_db, edit=lambda name, text: text.replace(
        "    created_at:\n", "    created_at:\n    loyalty_tier: {type: int, optional: true}\n"))
    report = check_live(d, mysql_settings)
    assert report.ok, report.render()
    [w] = [p for p in report.warnings if "loyalty_tier" in p.message]
    assert "does not exist in" in w.message and "null in every event until the column is added" in w.message
    assert w.line == _line_of(d / "orders.yaml", "loyalty_tier")
    assert "loyalty_tier:int (optional)" in report.render()


def test_foreign_key_cascades_into_a_mapped_table_are_warnings(tmp_path, shop_db, admin_db, mysql_settings):
    """Issue 16: InnoDB's cascades change child rows without binlog row events; check says so."""
    with admin_db.cursor() as cur:
        cur.execute(f"ALTER TABLE `{shop_db}`.order_lines ADD CONSTRAINT fk_lines_order FOREIGN KEY (order_id) "
                    f"REFERENCES `{shop_db}`.orders (id) ON DELETE CASCADE ON UPDATE CASCADE")
    d = _mappings(tmp_path, shop_db)
    report = check_live(d, mysql_settings)
    assert report.ok
    warned = [p for p in report.warnings if "fk_lines_order" in p.message]
    assert [w.message.split(" — ")[0] for w in warned] == [
        "foreign key fk_lines_order: ON DELETE CASCADE", "foreign key fk_lines_order: ON UPDATE CASCADE"]
    assert all(w.key == "children[0].table" and w.line == _line_of(d / "orders.yaml", "table: " + shop_db + ".order_lines")
               for w in warned)
    assert "without row events in the binlog" in warned[0].message and "RESTRICT" in warned[0].message


def test_lookups_are_checked_against_the_reference_tables(tmp_path, shop_db, mysql_settings):
    """Issue 16: a lookup through a table or column that does not exist is an error, with a suggestion."""
    good = ("  lookups:\n    customer_name:\n      from: customer_id\n      via:\n"
            f"        - {{table: {shop_db}.customers, key: customer_no, take: name}}\n")
    d = _mappings(tmp_path, shop_db, edit=lambda name, text: text.replace("  where:\n    deleted_at", good +
                                                                          "  where:\n    deleted_at", 1)
                  if name == "orders.yaml" else text)
    assert check_live(d, mysql_settings).ok
    (tmp_path / "bad").mkdir()
    bad = _mappings(tmp_path / "bad", shop_db, edit=lambda name, text: text.replace(
        "  where:\n    deleted_at", good.replace("take: name", "take: nmae") + "  where:\n    deleted_at", 1)
        if name == "orders.yaml" else text)
    [e] = check_live(bad, mysql_settings).errors
    assert e.key == "root.lookups.customer_name.via[0]" and "unknown column 'nmae'" in e.message
    assert "did you mean 'name'" in e.message
