"""check_offline, the report, exit codes, and the server-side rules that need no server."""

from __future__ import annotations

from cdc_bridge.mapping.check import (CheckProblem, CheckReport, check_offline, global_privileges, grant_problems,
                                      main, server_setting_problems)
from mapping_helpers import EXAMPLES


def test_offline_ok_renders_what_is_captured():
    report = check_offline(EXAMPLES)
    assert report.ok and report.exit_code == 0 and report.problems == []
    text = report.render()
    assert max(len(line) for line in text.splitlines()[:-1]) <= 100, "the summary must fit 100 columns"
    assert "  shop.order_lines -> Order lines (Line), id: id, parent key: order_id -> topic shop.order.events" in text
    assert "AddOrderLine" in text
    assert "deleted_at IS NULL" in text and "tenant_id IN (1, 2)" in text and "AND removed =" in text
    assert "id->order_id" in text and "* (all columns) except tenant_id," in text
    assert "OK: 2 aggregate(s), 4 table(s); offline check" in text.splitlines()[-1]


def test_offline_mapping_errors_exit_1(tmp_path):
    (tmp_path / "o.yaml").write_text("aggregate: Order\nroot:\n  table: orders\n  id: id\n")
    report = check_offline(tmp_path)
    assert not report.ok and report.exit_code == 1 and report.mappings is None
    [p] = report.problems
    assert (p.severity, p.category, p.line, p.key) == ("error", "mapping", 3, "root.table")
    assert f"ERROR   {tmp_path}/o.yaml:3: root.table: table must be written as schema.table" in report.render()
    assert "FAILED (exit code 1)" in report.render()


def test_exit_code_precedence_and_strict():
    r = CheckReport("m", problems=[CheckProblem("error", "server", "x"), CheckProblem("error", "schema", "y"),
                                   CheckProblem("warning", "mapping", "z")])
    assert r.exit_code == 2
    assert CheckReport("m", problems=[CheckProblem("warning", "schema", "w")]).exit_code == 0
    assert CheckReport("m", problems=[CheckProblem("warning", "schema", "w")], strict=True).exit_code == 2


def test_main_offline(capsys, tmp_path):
    assert main(["--mappings", str(EXAMPLES)]) == 0
    assert "shop.customer_addresses" in capsys.readouterr().out
    assert main(["-m", str(tmp_path)]) == 1
    assert "no mapping files" in capsys.readouterr().out


def test_server_settings_rules():
    good = {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"}
    assert server_setting_problems(good, True, (10, 11, 6)) == []
    assert server_setting_problems(good, False, (8, 0, 36)) == []
    bad = {"log_bin": "OFF", "binlog_format": "MIXED", "binlog_row_image": "MINIMAL", "binlog_row_metadata": "MINIMAL",
           "binlog_row_value_options": "PARTIAL_JSON"}
    msgs = [m for _, m in server_setting_problems(bad, False, (8, 0, 36))]
    assert len(msgs) == 5
    assert msgs[0].startswith("log_bin is OFF") and msgs[1].startswith("binlog_format is MIXED, must be ROW")
    assert msgs[2].startswith("binlog_row_image is MINIMAL, must be FULL")
    assert msgs[3].startswith("binlog_row_metadata is MINIMAL, must be FULL")
    # servers without binlog_row_metadata: a warning, not an error
    old = {k: v for k, v in good.items() if k != "binlog_row_metadata"}
    [(sev, msg)] = server_setting_problems(old, True, (10, 4, 30))
    assert sev == "warning" and "binlog_row_metadata" in msg


def test_grants():
    assert grant_problems(["GRANT ALL PRIVILEGES ON *.* TO `cdc`@`%` IDENTIFIED BY PASSWORD '*AB' WITH GRANT OPTION"]) == []
    assert grant_problems(["GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%'"]) == []
    # MariaDB >= 10.5 shows REPLICATION CLIENT as BINLOG MONITOR, REPLICATION SLAVE may read REPLICA
    assert grant_problems(["GRANT SELECT, BINLOG MONITOR, REPLICATION REPLICA ON *.* TO `cdc`@`%`"]) == []
    assert global_privileges(["GRANT USAGE ON *.* TO `x`@`%`", "GRANT ALL PRIVILEGES ON `shop`.* TO `x`@`%`"]) == {"USAGE"}
    probs = grant_problems(["GRANT USAGE ON *.* TO `x`@`%`", "GRANT ALL PRIVILEGES ON `shop`.* TO `x`@`%`"])
    assert len(probs) == 2
    assert "lacks REPLICATION SLAVE" in probs[0] and "lacks REPLICATION CLIENT" in probs[1]
    [p] = grant_problems(["GRANT SELECT, REPLICATION CLIENT ON *.* TO `x`@`%`", "GRANT `cdc_role` TO `x`@`%`"])
    assert "REPLICATION SLAVE" in p and "role" in p
