"""Issue 17: the command line's exit codes and messages, without services."""

from __future__ import annotations

import pytest
import yaml

from cdc_bridge import cli
from cdc_bridge.mapping.check import check_live

EXAMPLES = cli.Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture(autouse=True)
def _logging_as_before():
    """cli.main configures logging onto this test's captured stderr, which pytest closes afterwards:
    put back what the rest of the session logs with."""
    import logging

    import structlog

    saved, handlers = structlog.get_config(), list(logging.getLogger().handlers)
    yield
    structlog.configure(**saved)
    logging.getLogger().handlers = handlers


def test_usage_errors_exit_64_not_2(capsys):
    for argv in (["no-such-command"], ["inspect"], ["check", "--db-port", "x"], ["handover", "--config", "f"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 64, argv
    assert "usage: cdc-bridge" in capsys.readouterr().err


def _config(tmp_path) -> str:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "source": {"host": "127.0.0.1", "port": 1, "user": "u", "password": "p"},
        "kafka": {"bootstrap_servers": "127.0.0.1:1"}, "mappings_dir": str(EXAMPLES),
        "state": {"dir": str(tmp_path / "state")}}))
    return str(path)


def test_inspect_of_an_unknown_aggregate_is_an_error_with_a_suggestion(tmp_path, capsys):
    rc = cli.main(["inspect", "--config", _config(tmp_path), "--aggregate", "Ordr", "--id", "1"])
    err = capsys.readouterr().err
    assert rc == 64
    assert "no aggregate 'Ordr'" in err and "did you mean 'Order'" in err and "Customer, Order" in err


def test_inspect_needs_aggregate_and_id_together(tmp_path, capsys):
    assert cli.main(["inspect", "--config", _config(tmp_path), "--aggregate", "Order"]) == 64
    assert "--aggregate and --id go together" in capsys.readouterr().err


def test_inspect_summary_line():
    from cdc_bridge.sink.checkpoint import checkpoint_position
    from cdc_bridge.source.position import SourcePosition

    ck = {"position": {"gtid": "0-1-5", "binlog_file": "mysql-bin.000001", "binlog_pos": 500}, "batch": 3}
    same = SourcePosition("0-1-5", "mysql-bin.000001", 500)
    behind = SourcePosition("0-1-4", "mysql-bin.000001", 400)
    assert "in sync at" in cli._inspect_summary("b", ck, same, checkpoint_position)
    assert "is behind the Kafka checkpoint" in cli._inspect_summary("b", ck, behind, checkpoint_position)
    assert "LMDB holds no state" in cli._inspect_summary("b", ck, None, checkpoint_position)
    assert "no Kafka checkpoint and no state yet" in cli._inspect_summary("b", None, None, checkpoint_position)


def test_check_without_a_password_names_the_environment_variable(tmp_path):
    # a closed port gives a connection error, not "access denied": simulate the server's answer
    import pymysql

    def refuse(**_kw):
        raise pymysql.err.OperationalError(1045, "Access denied for user 'cdc'@'localhost' (using password: NO)")

    real = pymysql.connect
    pymysql.connect = refuse
    try:
        report = check_live(EXAMPLES, {"host": "127.0.0.1", "port": 3306, "user": "cdc", "password": ""})
    finally:
        pymysql.connect = real
    text = report.render()
    assert "CDC_BRIDGE__SOURCE__PASSWORD" in text
    assert "tables and columns were not checked" not in text and "nothing was checked on the server" in text


def test_schemas_command_writes_and_guards(tmp_path, capsys):
    out = tmp_path / "contracts"
    assert cli.main(["schemas", "--mappings", str(EXAMPLES), "--out", str(out)]) == 0
    assert (out / "Order" / "OrderPlaced.json").is_file() and (out / "asyncapi.json").is_file()
    assert cli.main(["schemas", "--mappings", str(EXAMPLES), "--check-against", str(out)]) == 0
    edited = tmp_path / "m"
    edited.mkdir()
    for f in EXAMPLES.glob("*.yaml"):
        (edited / f.name).write_text(f.read_text().replace("    currency:\n", "    currency: iso_currency\n"))
    assert cli.main(["check", "--mappings", str(edited), "--schemas", str(out)]) == 4
    text = capsys.readouterr().out
    assert "BREAKING: 1 change(s)" in text and "Order data.currency: field removed or renamed" in text
    assert cli.main(["schemas", "--mappings", str(EXAMPLES)]) == 64


def test_schemas_guard_compares_live_with_live_and_offline_with_offline(tmp_path, monkeypatch, capsys):
    """An offline OLD checked with --config: compared offline (no "type narrowed" for every auto field, exit 0);
    a live OLD checked without a connection (the documented CI step): a WARNING that auto fields were not
    compared and to pass --config, not silence; a live OLD with --config: live, a narrowed column exits 4."""
    import cdc_bridge.contracts as contracts
    from cdc_bridge.contracts.event_schemas import Column

    columns = {"shop.orders": {"id": Column("bigint", "bigint(20)", False),
                               "customer_id": Column("bigint", "bigint(20)", False),
                               "status": Column("enum", "enum('pending','paid')", False),
                               "currency": Column("char", "char(3)", False),
                               "created_at": Column("datetime", "datetime(6)", False)},
               "shop.order_lines": {"id": Column("bigint", "bigint(20)", False),
                                    "sku": Column("varchar", "varchar(40)", False)}}
    monkeypatch.setattr(contracts, "load_columns", lambda conn, mappings: columns)
    cfg = _config(tmp_path)
    off, live = tmp_path / "off", tmp_path / "live"
    assert cli.main(["schemas", "--mappings", str(EXAMPLES), "--out", str(off)]) == 0
    assert cli.main(["schemas", "--config", cfg, "--out", str(live)]) == 0
    capsys.readouterr()

    assert cli.main(["schemas", "--config", cfg, "--check-against", str(off)]) == 0
    out = capsys.readouterr().out
    assert "type narrowed" not in out and "was written offline" in out and "(offline schemas compared)" in out

    for argv in (["schemas", "--mappings", str(EXAMPLES), "--check-against", str(live)],
                 ["schemas", "--config", cfg, "--offline", "--check-against", str(live)],
                 ["check", "--mappings", str(EXAMPLES), "--schemas", str(live)]):
        assert cli.main(argv) == 0, argv
        out = capsys.readouterr().out
        warning = [line for line in out.splitlines() if line.startswith("WARNING: ")]
        assert warning and "`auto` fields are not compared" in warning[0] and "--config" in warning[0], (argv, out)
        assert "  Order data.status: typed in the old set, any JSON value now" in out, out

    assert cli.main(["schemas", "--config", cfg, "--check-against", str(live)]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out and "(live schemas compared)" in out
    columns["shop.orders"]["status"] = Column("enum", "enum('pending')", False)   # 'paid' dropped from the ENUM
    assert cli.main(["schemas", "--config", cfg, "--check-against", str(live)]) == 4
    assert "Order data.status: values ['paid'] removed" in capsys.readouterr().out
