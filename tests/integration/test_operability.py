"""Issue 7 on a running bridge process: metrics and health, SIGTERM, SIGHUP, bad credentials."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

import bridge_harness as h
from devenv import mariadb
from devenv.monolith import MonolithWriter, create_schema

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _wait(cond, timeout: float, what: str, log: Path | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def _sample(metrics: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)}\s+([0-9.e+-]+)$", metrics, re.M)
    return float(m.group(1)) if m else 0.0


def _deploy_metric_names() -> set[str]:
    spec = importlib.util.spec_from_file_location("deploy_files", ROOT / "tests/unit/test_deploy_files.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {mod.strip_sample_suffix(n) for n in mod.metric_names_used_in_deploy()}


def _setup(fresh_db, tmp_path, **overrides):
    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    port = _free_port()
    cfg = h.bridge_config(tmp_path, fresh_db, http={"host": "127.0.0.1", "port": port}, **overrides)
    return conn, topic, port, cfg, h.write_config(tmp_path, cfg)


def test_metrics_health_sigterm_and_sighup(fresh_db, tmp_path):
    conn, topic, port, cfg, cfg_path = _setup(fresh_db, tmp_path)
    log = tmp_path / "bridge.log"
    proc = h.start_bridge_process(cfg_path, log)
    try:
        _wait(lambda: _get(port, "/readyz")[0] == 200, 60, "/readyz", log)
        assert _get(port, "/healthz")[0] == 200
        ready = json.loads(_get(port, "/readyz")[1])
        assert ready["source_connected"] and ready["kafka_connected"]
        before = _get(port, "/metrics")[1]

        w = MonolithWriter(conn, fresh_db)
        for _ in range(5):
            w.place_order(2)
        w.change_status()
        _wait(lambda: _sample(_get(port, "/metrics")[1], "cdc_bridge_events_published_total",
                              '{aggregate="Order",event_type="OrderPlaced"}') >= 5, 30, "events metric", log)
        after = _get(port, "/metrics")[1]
        assert _sample(after, "cdc_bridge_source_transactions_total") >= _sample(before, "cdc_bridge_source_transactions_total") + 6
        assert _sample(after, "cdc_bridge_source_rows_total", f'{{table="{fresh_db}.order_lines"}}') >= 10
        assert _sample(after, "cdc_bridge_commands_total", f'{{operation="insert",table="{fresh_db}.orders"}}') >= 5
        assert _sample(after, "cdc_bridge_end_to_end_latency_seconds_count") >= 6
        assert _sample(after, "cdc_bridge_kafka_commit_duration_seconds_count") >= 1
        assert _sample(after, "cdc_bridge_lmdb_size_bytes") > 0
        assert _sample(after, "cdc_bridge_ready") == 1
        assert 'cdc_bridge_source_position_info{binlog_file="mysql-bin.' in after
        # CPU by role: the main loop (the daemon's main thread here) and the binlog reader process
        assert _sample(after, "cdc_bridge_cpu_seconds_total", '{thread="main"}') > 0
        assert _sample(after, "cdc_bridge_cpu_seconds_total", '{thread="reader"}') > 0
        assert _sample(after, "cdc_bridge_cpu_seconds_total", '{thread="committer"}') >= 0
        # every metric the dashboard and the alert rules use is exported by a running bridge
        exported = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", after, re.M)}
        exported |= {n[: -len("_total")] for n in exported if n.endswith("_total")}
        exported |= {n[: -len("_info")] for n in exported if n.endswith("_info")}
        missing = sorted(n for n in _deploy_metric_names() if n not in exported and n != "up")
        assert not missing, f"used in deploy/ but not exported: {missing}"

        # SIGHUP with a bad mapping: rejected, logged with file:line, old mappings stay in force
        mapping = tmp_path / "mappings" / "orders.yaml"
        good = mapping.read_text()
        mapping.write_text(good.replace("aggregate: Order", "aggregate: Order\nagregate_typo: 1"))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: "mapping reload rejected" in log.read_text(), 30, "the reload to be rejected", log)
        assert "orders.yaml:2" in log.read_text()
        w.place_order(1)
        _wait(lambda: _sample(_get(port, "/metrics")[1], "cdc_bridge_events_published_total",
                              '{aggregate="Order",event_type="OrderPlaced"}') >= 6, 30, "events after bad reload", log)

        # SIGHUP with a good edit: the new event name is used from the next transaction on
        doc = yaml.safe_load(good)
        doc["root"]["events"]["created"] = "OrderOpened"
        mapping.write_text(yaml.safe_dump(doc, sort_keys=False))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: "mappings reloaded" in log.read_text(), 30, "the reload", log)
        w.place_order(1)
        _wait(lambda: _sample(_get(port, "/metrics")[1], "cdc_bridge_events_published_total",
                              '{aggregate="Order",event_type="OrderOpened"}') >= 1, 30, "the new event name", log)

        # SIGTERM in the middle of a stream of writes: exit 0 quickly, nothing half-done
        for _ in range(30):
            w.step()
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        assert time.time() - t0 < 15
        for _ in range(30):
            w.step()
        proc = h.start_bridge_process(cfg_path, log)
        _wait(lambda: _get(port, "/readyz")[0] == 200, 60, "/readyz after restart", log)
        from cdc_bridge.source.preflight import current_position

        target = current_position(conn)

        def caught_up() -> bool:
            m = _get(port, "/metrics")[1]
            pos = (_sample(m, "cdc_bridge_source_binlog_file_index"), _sample(m, "cdc_bridge_source_binlog_offset_bytes"))
            return pos >= target.order_key

        try:
            _wait(caught_up, 60, "catch up", log)
        except AssertionError:
            print(target, [l for l in _get(port, "/metrics")[1].splitlines() if "binlog" in l or "transactions_total" in l])
            raise
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    events = h.events_of(h.read_topic(topic))
    h.check_unique_and_gapless(events)
    folded = h.fold_orders([dict(e, event_type="OrderPlaced" if e["event_type"] == "OrderOpened" else e["event_type"])
                            for e in events])
    assert h.comparable(folded) == h.comparable(h.orders_in_db(conn, fresh_db))


def test_wrong_password_is_reported_and_retried_with_backoff(fresh_db, tmp_path):
    _, _, port, cfg, _ = _setup(fresh_db, tmp_path)
    cfg["source"]["password"] = "Not-The-Pw-4711"
    cfg["source"]["reconnect_initial_backoff"] = 0.2
    cfg_path = h.write_config(tmp_path, cfg)
    log = tmp_path / "bridge.log"
    proc = h.start_bridge_process(cfg_path, log)
    try:
        _wait(lambda: log.read_text().count("cannot connect to the source database") >= 3, 30, "retries", log)
        text = log.read_text()
        assert "Access denied" in text and "source.user/source.password" in text
        delays = [float(x) for x in re.findall(r'"retry_in_seconds": ([0-9.]+)', text)]
        assert delays[:3] == sorted(delays[:3]) and delays[2] > delays[0], delays  # backoff grows
        assert proc.poll() is None, "a refused login is retried, not fatal"
        assert _get(port, "/healthz")[0] == 200 and _get(port, "/readyz")[0] == 503
        assert "Not-The-Pw-4711" not in text, "the password must never be logged"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_unreachable_broker_is_reported_and_retried(fresh_db, tmp_path):
    _, _, port, cfg, _ = _setup(fresh_db, tmp_path)
    cfg["kafka"]["bootstrap_servers"] = f"127.0.0.1:{_free_port()}"
    cfg_path = h.write_config(tmp_path, cfg)
    log = tmp_path / "bridge.log"
    proc = h.start_bridge_process(cfg_path, log)
    try:
        _wait(lambda: len(re.findall(r"retry|unreachable|unavailable", log.read_text(), re.I)) >= 2, 60,
              "broker retries", log)
        assert proc.poll() is None
        assert _get(port, "/readyz")[0] == 503
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-2000:]
