"""The hand-over of docs/operations.md "Rebuilding events with new rules", end to end.

An operator's run of the documented procedure on the real MariaDB and Kafka, with the
monolith writer writing the whole time (also while no bridge runs):

1. a bridge (`cdc-bridge run`, command log on) publishes version 1;
2. the mappings are copied and an aggregate rule changed: the pending -> paid transition
   is renamed (OrderPaid -> OrderPaymentReceived) and line events get the order's currency;
3. `cdc-bridge rebuild --version 2 --mappings new-mappings/` runs next to the bridge until
   it logs that it caught up (while the bridge is writing the log: CommandLogSource used to
   say so only once the log went quiet, which under a steady monolith could be never);
4. hand-over: SIGTERM the bridge, stop the following rebuild, drain the log with
   `rebuild --until-caught-up` (exit 0), then start `cdc-bridge run` with the rebuild's
   identity (name <name>-v2, state.dir <state.dir>-v2, the new mappings with
   topic <events topic>.v2, command_log.enabled), and restart it twice (SIGTERM, SIGKILL).

On `<events topic>.v2`: every event once, sequences 1..n per aggregate across the hand-over,
the history before the hand-over equal to version 1 (but for the new rules), the new rules in
the live events after it, nothing from the transactions re-read at the hand-over, and the
events folded into state equal to the database.

One deviation from the text of step 4, on purpose: the handed-over bridge gets
`command_log.topic: <name>.commands` as well. With only `command_log.enabled: true` it starts
a new log `<name>-v2.commands` at the hand-over point, and a later rebuild from its config
replays only what came after the hand-over (updates and deletes of aggregates it never saw
become dead letters). With the old log continued, a `rebuild --version 3` from the
handed-over config with unchanged rules reproduces version 2 exactly, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition

import bridge_harness as h
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.position import SourcePosition, binlog_file_index
from cdc_bridge.source.preflight import current_position
from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter

RENAMED = {"OrderPaymentReceived": "OrderPaid"}   # new event type -> the one version 1 publishes


class Writer:
    """The monolith on its own thread and connection, writing until stopped."""

    def __init__(self, schema: str):
        self.w = MonolithWriter(mariadb.admin_connect(), schema)
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.steps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                if self.steps == 60:
                    self.w.big_transaction(150)
                else:
                    self.w.step()
                self.steps += 1
                time.sleep(0.01)
            self.w.place_order()  # end on a mapped write
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def start(self) -> "Writer":
        self.thread.start()
        return self

    def stop(self) -> int:
        self.stop_flag.set()
        self.thread.join(30)
        assert not self.thread.is_alive() and self.error is None, f"writer failed: {self.error!r}"
        return self.steps


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _cli(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", *args], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, cwd=h.ROOT, env=env, start_new_session=True)


def _term(proc: subprocess.Popen, log: Path, what: str) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"{what} did not stop on SIGTERM:\n{_log(log)[-3000:]}")
    assert rc == 0, f"{what} exited {rc}:\n{_log(log)[-3000:]}"


def _alive(proc: subprocess.Popen, log: Path, what: str) -> None:
    assert proc.poll() is None, f"{what} died (exit {proc.returncode}):\n{_log(log)[-3000:]}"


def _checkpoint(name: str, timeout: float = 10) -> SourcePosition | None:
    ck = read_checkpoint(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers()), f"{name}.checkpoints", name,
                         timeout=timeout)
    return checkpoint_position(ck) if ck else None


def _wait_caught_up(proc: subprocess.Popen, log: Path, name: str, conn, what: str) -> None:
    """Until the bridge `name` has checkpointed everything the server has written so far."""
    target = current_position(conn)

    def done() -> bool:
        _alive(proc, log, what)
        pos = _checkpoint(name)
        return pos is not None and pos.order_key >= target.order_key

    h.wait_for(done, 60, f"{what} to reach {target}")


def _end_offsets(topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": "handover-ends"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    finally:
        c.close()


def _position(event: dict) -> tuple[int, int]:
    s = event["source"]
    return (binlog_file_index(s["binlog_file"]), s["binlog_pos"])


def _as_v1(event: dict) -> dict:
    """A version-2 event as version 1 published it: the old event type, no currency on line events."""
    e = {**event, "event_type": RENAMED.get(event["event_type"], event["event_type"])}
    if isinstance(e["data"].get("order"), dict):
        e["data"] = {**e["data"], "order": {k: v for k, v in e["data"]["order"].items() if k != "currency"}}
    return e


def _new_rules(src: Path, dst: Path) -> None:
    """Step 1: a copy of the mappings with changed aggregate rules (the topic stays: rebuild adds .v2)."""
    shutil.copytree(src, dst)
    path = dst / "orders.yaml"
    doc = yaml.safe_load(path.read_text())
    for t in doc["root"]["transitions"]:
        if t["event"] == "OrderPaid":
            t["event"] = "OrderPaymentReceived"
    doc["children"][0]["enrich"] = ["customer_id", "status", "currency"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_handover_to_the_rebuilt_version_continues_live_exactly_once(shop, tmp_path):
    conn, db, topic = shop
    v2_topic = f"{topic}.v2"
    cfg = h.bridge_config(tmp_path, db, command_log={"enabled": True},
                          held={"max_age_seconds": 100000, "max_count": 100000})
    name = cfg["name"]
    cfg_path = h.write_config(tmp_path, cfg)
    old_log, rb_log, new_log = tmp_path / "bridge.log", tmp_path / "rebuild.log", tmp_path / "bridge-v2.log"
    procs: list[subprocess.Popen] = []
    writer: Writer | None = None

    try:
        # version 1, with the command log, while the monolith writes
        old = _cli("run", "--config", str(cfg_path), log=old_log)
        procs.append(old)
        h.wait_for(lambda: "snapshot finished" in _log(old_log), 60, "the bridge to start")
        writer = Writer(db).start()
        h.wait_for(lambda: writer.steps >= 120, 30, "the writer")

        # 1. new rules in a copy of the mappings; 2. the rebuild next to the running bridge
        new_maps = tmp_path / "new-mappings"
        _new_rules(tmp_path / "mappings", new_maps)
        rb = _cli("rebuild", "--config", str(cfg_path), "--version", "2", "--mappings", str(new_maps), log=rb_log)
        procs.append(rb)
        # while the bridge keeps writing the log (the writer does not pause): the history so far replays in
        # about a second; a rebuild that waits for a quiet log to say so is the bug this timeout catches
        h.wait_for(lambda: "rebuild caught up with the command log" in _log(rb_log), 15,
                  "the rebuild to report caught up while the bridge writes")
        _alive(old, old_log, "the version 1 bridge")
        time.sleep(1)

        # 4. hand-over. Stop the running bridge (the writer goes on)...
        _term(old, old_log, "the version 1 bridge")
        steps_at_stop = writer.steps
        old_end = _checkpoint(name)
        assert old_end is not None
        # ...let the rebuild drain the log: stop the follower, `--until-caught-up` exits 0 once drained
        _term(rb, rb_log, "the following rebuild")
        drain = _cli("rebuild", "--config", str(cfg_path), "--version", "2", "--mappings", str(new_maps),
                     "--until-caught-up", log=rb_log)
        procs.append(drain)
        assert drain.wait(60) == 0, _log(rb_log)[-3000:]
        rebuild_end = _checkpoint(f"{name}-v2")
        assert rebuild_end is not None and rebuild_end <= old_end, (rebuild_end, old_end)
        boundary = _end_offsets(v2_topic)   # records at or after these offsets come from the live bridge

        # ...and start the bridge with the rebuild's identity
        doc = yaml.safe_load((new_maps / "orders.yaml").read_text())
        doc["topic"] = v2_topic
        (new_maps / "orders.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        cfg_v2 = {**cfg, "name": f"{name}-v2", "state": {**cfg["state"], "dir": str(tmp_path / "state-v2")},
                  "mappings_dir": str(new_maps),
                  # docs: `command_log.enabled: true`; the topic keeps the one complete log going (see the module doc)
                  "command_log": {"enabled": True, "topic": f"{name}.commands"}}
        cfg_v2_path = tmp_path / "bridge-v2.yaml"
        cfg_v2_path.write_text(yaml.safe_dump(cfg_v2, sort_keys=False))

        def start_v2(starts: int) -> subprocess.Popen:
            p = _cli("run", "--config", str(cfg_v2_path), log=new_log)
            procs.append(p)
            h.wait_for(lambda: _log(new_log).count("state and checkpoint agree") + _log(new_log).count(
                "LMDB is behind the Kafka checkpoint") >= starts or p.poll() is not None, 60, "the v2 bridge to start")
            _alive(p, new_log, "the v2 bridge")
            return p

        live = start_v2(1)
        assert writer.steps > steps_at_stop + 20, "the monolith should write while no bridge runs"
        assert "no checkpoint" not in _log(new_log), "the v2 bridge did not find the rebuild's checkpoint"
        _wait_caught_up(live, new_log, f"{name}-v2", conn, "the v2 bridge")
        time.sleep(1.5)

        # restarts of the handed-over bridge: clean, then a crash
        _term(live, new_log, "the v2 bridge")
        time.sleep(0.5)
        live = start_v2(2)
        time.sleep(1.5)
        os.killpg(live.pid, signal.SIGKILL)
        live.wait(10)
        time.sleep(0.5)
        live = start_v2(3)
        time.sleep(1)

        steps = writer.stop()
        _wait_caught_up(live, new_log, f"{name}-v2", conn, "the v2 bridge")
        _term(live, new_log, "the v2 bridge")
    finally:
        if writer is not None:
            writer.stop_flag.set()
            writer.thread.join(30)
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    v1 = h.events_of(h.read_topic(topic))
    records = h.read_topic(v2_topic)
    v2 = h.events_of(records)
    before = [r["value"] for r in records if r["value"] is not None and r["offset"] < boundary.get(r["partition"], 0)]
    after = [r["value"] for r in records if r["value"] is not None and r["offset"] >= boundary.get(r["partition"], 0)]
    assert len(v1) > 300 and len(before) == len(v1) and len(after) > 100, (len(v1), len(before), len(after))

    # every event once, every aggregate's sequences 1..n in topic order, across the hand-over
    h.check_unique_and_gapless(v2)
    # issue 18: each version's events match the schemas of its own mappings (v2: the renamed transition event,
    # currency in the line events' order context)
    settings = mariadb.connection_settings()
    assert h.validate_events(v1, tmp_path / "mappings", settings) == len(v1)
    assert h.validate_events(v2, new_maps, settings) == len(v2)
    across = {e["aggregate_id"] for e in before} & {e["aggregate_id"] for e in after}
    assert len(across) > 20, "too few aggregates with events on both sides of the hand-over"

    # before the hand-over: version 1's history with the new rules (same ids, sequences, positions)
    assert [_as_v1(e) for e in sorted(before, key=lambda e: e["event_id"])] == sorted(v1, key=lambda e: e["event_id"])

    # the new rules, before and after the hand-over; the old event type nowhere in version 2
    types_after = {e["event_type"] for e in after}
    assert "OrderPaymentReceived" in types_after and not [e for e in v2 if e["event_type"] == "OrderPaid"]
    line_events = [e for e in v2 if e["event_type"].startswith("OrderLine")]
    after_ids = {e["event_id"] for e in after}
    assert [e for e in line_events if e["event_id"] in after_ids] and all(
        set(e["data"]["order"]) == {"customer_id", "status", "currency"} for e in line_events)

    # the live bridge resumed at the rebuild's last command: what it read again up to the old bridge's
    # last position published nothing, and everything after that position is in version 2
    assert min(_position(e) for e in after) > old_end.order_key
    assert max(_position(e) for e in before) <= rebuild_end.order_key

    # the events folded into state equal the database
    folded = h.comparable(h.fold_orders([_as_v1(e) for e in v2]))
    expected = h.comparable(h.orders_in_db(conn, db))
    assert folded.keys() == expected.keys()
    wrong = [a for a in expected if expected[a] != folded[a]]
    assert not wrong, f"{len(wrong)} aggregates differ, e.g. {wrong[0]}: db={expected[wrong[0]]} v2={folded[wrong[0]]}"

    # the command log the handed-over bridge keeps is complete: a rebuild from its config, with its rules,
    # reproduces version 2 exactly, rejections included
    v3_log = tmp_path / "rebuild-v3.log"
    v3 = _cli("rebuild", "--config", str(cfg_v2_path), "--version", "3", "--until-caught-up", log=v3_log)
    try:
        assert v3.wait(60) == 0, _log(v3_log)[-3000:]
    finally:
        if v3.poll() is None:
            os.killpg(v3.pid, signal.SIGKILL)
    assert sorted(h.events_of(h.read_topic(f"{v2_topic}.v3")), key=lambda e: e["event_id"]) == \
        sorted(v2, key=lambda e: e["event_id"])
    rejected = sorted(json.dumps(d, sort_keys=True) for d in h.events_of(h.read_topic(f"{name}-v2.dead-letter")))
    assert sorted(json.dumps(d, sort_keys=True) for d in h.events_of(h.read_topic(f"{name}-v2-v3.dead-letter"))) \
        == rejected

    print(f"\nhand-over: {steps} writer steps; v1 {len(v1)} events; v2 {len(before)} rebuilt + {len(after)} live "
          f"({len(across)} aggregates across the hand-over); {len(rejected)} rejections; v3 == v2")
