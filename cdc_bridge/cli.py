"""cdc-bridge command line: run | ingest | worker | handover | check | schemas | snapshot | rebuild | inspect.

Exit codes: 0 ok; 1 mapping errors; 2 schema problems found by `check`; 3 server
settings; 4 breaking event-schema changes (`schemas --check-against`, `check --schemas`); 64 usage; 95 recovery refused; 96 handover refused; 78 bad configuration; source errors
(see docs/source.md) and sink errors (docs/kafka.md) carry their own codes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from cdc_bridge import __version__

log = structlog.get_logger("cdc_bridge")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE), as docs/operations.md says: 2 is `check`'s
    "schema problems"."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(64, f"{self.prog}: error: {message}\n")


def _daemon_args(p: argparse.ArgumentParser) -> None:
    """run, ingest and worker: the same bridge.yaml."""
    p.add_argument("--config", "-c", metavar="FILE", help="bridge YAML file (environment variables CDC_BRIDGE__* override it)")
    p.add_argument("--print-config", action="store_true", help="print the effective configuration (secrets masked) and exit")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cdc-bridge",
        description=(
            "Tails a MySQL/MariaDB binlog, turns committed row changes into commands through the YAML "
            "mappings, applies them to aggregates whose state lives in LMDB, and publishes the resulting "
            "domain events to Kafka exactly once."
        ),
        epilog="Configuration keys and their environment variables: docs/configuration.md. Mappings: docs/mappings.md.",
    )
    p.add_argument("--version", action="version", version=f"cdc-bridge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the bridge until SIGTERM/SIGINT (SIGHUP reloads the mappings)",
        description="Run the bridge: stream the binlog, apply aggregates, publish events. SIGTERM/SIGINT stop it "
        "cleanly (the open batch is committed); SIGHUP reloads and validates the mappings, keeping the old ones "
        "if the new ones are invalid. Metrics, /healthz and /readyz are served on http.port.",
    )
    _daemon_args(run)

    ing = sub.add_parser(
        "ingest",
        help="scale-out, first stage: binlog -> commands topic (the aggregate workers apply them)",
        description="Run ingest only: stream the binlog through the mappings and publish the commands, exactly once "
        "with the source checkpoint, to the commands topic (<name>.commands, state.partitions partitions), where "
        "`cdc-bridge worker` processes apply them. Shares the checkpoint and transactional.id with `run`: run one or "
        "the other. See docs/scaling.md.",
    )
    _daemon_args(ing)

    wrk = sub.add_parser(
        "worker",
        help="scale-out, second stage: an aggregate worker of the bridge's consumer group",
        description="Run an aggregate worker: a member of the consumer group <name>.workers over the commands topic. "
        "It applies the commands of the partitions assigned to it to their state (LMDB in state.dir, restored from "
        "the changelog topic when behind) and publishes events, changelog and consumed offsets in one Kafka "
        "transaction. Start as many as you like, on any machines; each needs its own state.dir and a stable, "
        "unique --worker-id. See docs/scaling.md.",
    )
    _daemon_args(wrk)
    wrk.add_argument("--worker-id", help="this worker's stable identity (default worker.id, else the host name)")

    chk = sub.add_parser(
        "check",
        help="validate the mappings offline, and against the live database when one is configured",
        description="Validate every mapping file (errors name file:line and key). With --config or --db-host, also "
        "check tables, columns, keys and the server's binlog settings, and print what will be captured. "
        "Exit 0 only when all is well.",
    )
    chk.add_argument("--config", "-c", metavar="FILE", help="bridge YAML file (mappings_dir and source connection)")
    chk.add_argument("--mappings", "-m", metavar="DIR", help="mappings directory (overrides the config's mappings_dir)")
    chk.add_argument("--db-host", help="database host for the live check")
    chk.add_argument("--db-port", type=int, default=3306)
    chk.add_argument("--db-user", default="root")
    chk.add_argument("--db-password", default=None, help="prefer the CDC_BRIDGE__SOURCE__PASSWORD environment variable")
    chk.add_argument("--offline", action="store_true", help="only validate the files, even if a connection is configured")
    chk.add_argument("--schemas", metavar="DIR", help="also compare the events' schemas with this schema set "
                     "(`cdc-bridge schemas --out`): exit 4 on a breaking change")

    sch = sub.add_parser(
        "schemas",
        help="JSON Schemas of every event type and an AsyncAPI document, from the mappings; a breaking-change guard",
        description="Write a JSON Schema (draft 2020-12) per event type of every aggregate, index.json and one "
        "AsyncAPI 3.0 document (asyncapi.json) to --out. With --config the database's column types make every "
        "`auto` field precise; without a connection they stay open. --check-against DIR compares with a schema "
        "set written earlier and exits 4 on a change that breaks consumers (a field or event type removed, a "
        "type narrowed, a topic changed); the current schemas are built the way DIR was (live or offline, its "
        "index.json), and a live DIR checked without a connection leaves the `auto` fields uncompared (a WARNING "
        "says so). See docs/events.md, contracts.",
    )
    sch.add_argument("--config", "-c", metavar="FILE", help="bridge YAML file (mappings_dir, database, kafka)")
    sch.add_argument("--mappings", "-m", metavar="DIR", help="mappings directory (overrides the config's)")
    sch.add_argument("--out", "-o", metavar="DIR", help="write the schema set here")
    sch.add_argument("--check-against", metavar="DIR", help="a previous schema set: report breaking changes "
                     "(live against live, which needs --config, offline against offline)")
    sch.add_argument("--offline", action="store_true", help="do not connect to the database even with --config")

    snp = sub.add_parser(
        "snapshot",
        help="read the mapped tables' existing rows into state (and Snapshotted events), then exit",
        description="Take a consistent snapshot of the mapped tables (tied to a binlog position), in primary-key "
        "chunks, resumable after a crash; `run` then streams from exactly that position. A bridge without "
        "checkpoint does this by itself when snapshot.mode is initial or when_needed. Over existing state (for "
        "example after the saved position was purged) only differences are published, and aggregates that no "
        "longer exist get their deleted event.",
    )
    snp.add_argument("--config", "-c", metavar="FILE", required=True)
    snp.add_argument("--aggregate", help="re-snapshot only these aggregates of this type, while the bridge runs "
                     "(needs source.signal_table; publishes only differences)")
    snp.add_argument("--id", dest="ids", action="append", metavar="ID",
                     help="an aggregate id to re-snapshot (repeat for several; composite ids as 'a:b')")

    reb = sub.add_parser(
        "rebuild",
        help="replay the command log into new, versioned events topics with fresh state",
        description="Replay the bridge's command log (command_log.enabled must have been on) through the current "
        "aggregate rules into <topic>.v<N>, with its own state (<state.dir>-v<N>) and checkpoint, while the running "
        "bridge keeps serving the current topics. Logs 'rebuild caught up with the command log' when it has caught "
        "up and keeps following the log until SIGTERM (or exits then with --until-caught-up). See "
        "docs/operations.md for switching consumers over.",
    )
    reb.add_argument("--config", "-c", metavar="FILE", required=True, help="the running bridge's YAML file")
    reb.add_argument("--version", "-V", dest="topic_version", type=int, required=True,
                     help="version number of the new topics (2 or more)")
    reb.add_argument("--mappings", "-m", metavar="DIR", help="mappings with the new rules (default: the config's)")
    reb.add_argument("--until-caught-up", action="store_true", help="exit 0 once caught up instead of following")

    hnd = sub.add_parser(
        "handover",
        help="move a stopped bridge's state between embedded mode (run) and aggregate workers (ingest + worker)",
        description="--to workers: with the embedded bridge stopped, write its LMDB state to the changelog topic and "
        "start the workers' consumer group exactly after it; then start `ingest` and the workers. --to embedded: "
        "with ingest and the workers stopped (and the workers' lag 0), read the changelog into a fresh LMDB in "
        "state.dir at the checkpoint; then start `run`. Nothing is published: no event is lost or doubled. "
        "Exit 96 when refused (the message says what to do first). See docs/scaling.md.",
    )
    hnd.add_argument("--config", "-c", metavar="FILE", required=True, help="the bridge's YAML file")
    hnd.add_argument("--to", required=True, choices=("workers", "embedded"), help="the mode to move to")

    ins = sub.add_parser(
        "inspect",
        help="show the bridge's checkpoint, state position and an aggregate's stored state",
        description="Read-only look at what the bridge stored: the Kafka checkpoint, the LMDB applied position, "
        "held children, and optionally one aggregate's record.",
    )
    ins.add_argument("--config", "-c", metavar="FILE", required=True)
    ins.add_argument("--aggregate", help="aggregate type, e.g. Order")
    ins.add_argument("--id", dest="aggregate_id", help="aggregate id, e.g. 42")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from cdc_bridge.observability.logging import configure_logging

    configure_logging()
    try:
        if args.command in ("run", "ingest", "worker"):
            return _run(args)
        if args.command == "check":
            return _check(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "rebuild":
            return _rebuild(args)
        if args.command == "snapshot":
            return _snapshot(args)
        if args.command == "handover":
            return _handover(args)
        if args.command == "schemas":
            return _schemas(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        # once: plain text for a person at a terminal, a JSON log line for a log collector
        if sys.stderr.isatty():
            print(f"cdc-bridge: {e}", file=sys.stderr)
        else:
            log.error(type(e).__name__, error=str(e), exit_code=code)
        return int(code)
    return 64


def _run(args: argparse.Namespace) -> int:
    """run (embedded), ingest and worker: a daemon with metrics, health and signals."""
    from cdc_bridge.config import load_config
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.observability.http import HealthServer
    from cdc_bridge.observability.logging import configure_logging
    from cdc_bridge.observability.metrics import BridgeMetrics

    cfg = load_config(args.config)
    configure_logging(cfg.log_level)
    if args.print_config:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))  # SecretStr dumps as "**********"
        return 0
    mappings = load_mappings(cfg.mappings_dir)  # a bad mapping never starts the daemon
    metrics = BridgeMetrics()
    role = {"run": "embedded", "ingest": "ingest", "worker": "worker"}[args.command]
    metrics.info.info({"version": __version__, "name": cfg.name, "role": role})
    if args.command == "worker":
        from cdc_bridge.apply.worker import AggregateWorker

        bridge: Any = AggregateWorker(cfg, mappings, metrics, worker_id=args.worker_id)
    elif args.command == "ingest":
        from cdc_bridge.pipeline import Ingest

        bridge = Ingest(cfg, mappings, metrics)
    else:
        from cdc_bridge.pipeline import Bridge

        bridge = Bridge(cfg, mappings, metrics)
    http = HealthServer(cfg.http.host, cfg.http.port, metrics.registry, bridge.health, bridge.readiness)
    http.start()
    log.info("bridge starting", name=cfg.name, role=role, http_port=http.port, mappings=str(cfg.mappings_dir),
             aggregates=[a.aggregate for a in mappings.aggregates])

    def on_stop(signum, _frame):
        log.info("stop requested", signal=signal.Signals(signum).name)
        bridge.stop()

    def on_hup(_signum, _frame):
        if not hasattr(bridge, "request_reload"):
            log.warning("SIGHUP ignored: a worker applies the mappings it started with; restart it to change them")
            return
        log.info("mapping reload requested (SIGHUP)")
        bridge.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    from cdc_bridge.tuning import tune

    tune()  # everything loaded for the daemon's lifetime: out of the collector's way (see tuning.py)
    try:
        rc = bridge.run()
    finally:
        http.stop()
    committed = getattr(bridge, "committed", None)
    log.info("bridge stopped", role=role, position=str(committed) if committed else None)
    return rc


def _check(args: argparse.Namespace) -> int:
    from cdc_bridge.mapping import check as mcheck

    mappings_dir: Path | None = Path(args.mappings) if args.mappings else None
    conn = None
    if args.config:
        from cdc_bridge.config import load_config

        cfg = load_config(args.config)
        mappings_dir = mappings_dir or cfg.mappings_dir
        s = cfg.source
        conn = {"host": s.host, "port": s.port, "user": s.user, "password": s.password.get_secret_value()}
    if args.db_host:
        import os

        pw = args.db_password if args.db_password is not None else os.environ.get("CDC_BRIDGE__SOURCE__PASSWORD", "")
        conn = {"host": args.db_host, "port": args.db_port, "user": args.db_user, "password": pw}
    if mappings_dir is None:
        mappings_dir = Path("mappings")
    report = mcheck.check_offline(mappings_dir) if (conn is None or args.offline) else mcheck.check_live(mappings_dir, conn)
    print(report.render())
    code = report.exit_code
    if args.schemas and report.mappings is not None:
        from cdc_bridge.contracts import guard

        broken = guard(report.mappings, None if args.offline else conn, Path(args.schemas))
        code = code or (4 if broken else 0)
    return code


def _snapshot(args: argparse.Namespace) -> int:
    from cdc_bridge.config import load_config
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.observability.logging import configure_logging
    from cdc_bridge.pipeline import Bridge

    cfg = load_config(args.config)
    configure_logging(cfg.log_level)
    if args.aggregate or args.ids:
        if not (args.aggregate and args.ids):
            print("cdc-bridge snapshot: --aggregate and --id go together, e.g. --aggregate Film --id 2000",
                  file=sys.stderr)
            return 64
        from cdc_bridge.ingest.resnapshot import request

        r = request(cfg, load_mappings(cfg.mappings_dir), args.aggregate, args.ids)
        print(f"re-snapshot of {r['aggregate']} {', '.join(r['ids'])} requested ({r['rows']} rows read under share "
              f"locks; signal {r['signal_id']} in {cfg.source.signal_table}): the running bridge publishes the "
              "differences when it reads it (log 're-snapshot applied')")
        return 0
    bridge = Bridge(cfg, load_mappings(cfg.mappings_dir))
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    return bridge.snapshot()


def _rebuild(args: argparse.Namespace) -> int:
    from cdc_bridge.config import load_config
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.rebuild import rebuild_bridge

    cfg = load_config(args.config)
    mappings = load_mappings(Path(args.mappings) if args.mappings else cfg.mappings_dir)
    bridge = rebuild_bridge(cfg, mappings, args.topic_version, until_caught_up=args.until_caught_up)
    signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
    signal.signal(signal.SIGINT, lambda *_: bridge.stop())
    return bridge.run()


def _schemas(args: argparse.Namespace) -> int:
    from cdc_bridge.contracts import asyncapi_document, guard, schema_set_for, write_schema_set
    from cdc_bridge.mapping.loader import load_mappings

    cfg = None
    conn = None
    if args.config:
        from cdc_bridge.config import load_config

        cfg = load_config(args.config)
        s = cfg.source
        conn = None if args.offline else {"host": s.host, "port": s.port, "user": s.user,
                                          "password": s.password.get_secret_value()}
    mappings_dir = Path(args.mappings) if args.mappings else (cfg.mappings_dir if cfg else Path("mappings"))
    mappings = load_mappings(mappings_dir)
    if not args.out and not args.check_against:
        print("cdc-bridge schemas: give --out DIR, --check-against DIR, or both", file=sys.stderr)
        return 64
    schemas = schema_set_for(mappings, conn)
    if cfg is not None and cfg.change_stream.enabled:
        from cdc_bridge.contracts.change_schemas import change_schemas
        from cdc_bridge.ingest.change_stream import streamed_tables

        schemas.changes = change_schemas(cfg, streamed_tables(cfg, mappings), conn)
    if args.out:
        name = cfg.name if cfg else "cdc-bridge"
        files = write_schema_set(Path(args.out), schemas, asyncapi_document(cfg, schemas, name))
        print(f"wrote {len(files)} files to {args.out} ({sum(len(e) for e in schemas.events.values())} event types"
              f"{f', {len(schemas.changes)} change stream topics' if schemas.changes else ''}"
              f"{'' if schemas.live else '; offline: auto fields accept any JSON value'})")
    if args.check_against:
        return 4 if guard(mappings, conn, Path(args.check_against), schemas=schemas) else 0
    return 0


def _handover(args: argparse.Namespace) -> int:
    from cdc_bridge.apply import handover
    from cdc_bridge.config import load_config

    cfg = load_config(args.config)
    report = handover.to_workers(cfg) if args.to == "workers" else handover.to_embedded(cfg)
    print(report.render())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from cdc_bridge.aggregate.router import partition_for
    from cdc_bridge.config import load_config
    from cdc_bridge.mapping.check import _suggest
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
    from cdc_bridge.state.lmdb_store import LmdbStateStore

    cfg = load_config(args.config)
    if bool(args.aggregate) != bool(args.aggregate_id):
        print("cdc-bridge inspect: --aggregate and --id go together, e.g. --aggregate Order --id 42", file=sys.stderr)
        return 64
    if args.aggregate:
        names = [a.aggregate for a in load_mappings(cfg.mappings_dir).aggregates]
        if args.aggregate not in names:
            print(f"cdc-bridge: no aggregate {args.aggregate!r} in {cfg.mappings_dir}{_suggest(args.aggregate, names)} "
                  f"(aggregates: {', '.join(names)})", file=sys.stderr)
            return 64
    ckpt_topic = cfg.kafka.checkpoint_topic or f"{cfg.name}.checkpoints"
    ckpt = read_checkpoint(cfg.kafka, ckpt_topic, cfg.name)
    out: dict = {"checkpoint": ckpt}
    # read-only: works beside a running daemon, which holds the writer lock
    store = LmdbStateStore(cfg.state.dir, partitions=cfg.state.partitions, map_size=cfg.state.map_size_mb << 20,
                           readonly=True)
    found = True
    try:
        pos = store.applied_position()
        out["state"] = {"applied_position": pos.to_dict() if pos else None, "meta": store.meta(), **store.stats()}
        if args.aggregate:
            p = partition_for(args.aggregate_id, cfg.state.partitions)
            rec = store.get(p, args.aggregate, args.aggregate_id)
            out["aggregate"] = {"partition": p, "record": rec.to_dict() if rec else None}
            found = rec is not None
    finally:
        store.close()
    print(_inspect_summary(cfg.name, ckpt, pos, checkpoint_position))
    if args.aggregate and not found:
        print(f"no {args.aggregate} with id {args.aggregate_id!r} in the state (partition "
              f"{out['aggregate']['partition']}): the bridge never saw it, or the id is spelled differently "
              "(a composite id is written 'a:b')")
    print(json.dumps(out, indent=2, default=str))
    return 0 if found else 1


def _inspect_summary(name: str, ckpt: dict | None, lmdb_pos: Any, checkpoint_position: Any) -> str:
    """One line first: do Kafka's checkpoint and LMDB agree?"""
    if ckpt is None:
        return (f"bridge {name!r}: no Kafka checkpoint yet; LMDB at {lmdb_pos}" if lmdb_pos else
                f"bridge {name!r}: no Kafka checkpoint and no state yet (it has not committed a batch)")
    ck = checkpoint_position(ckpt)
    if lmdb_pos is None:
        return f"bridge {name!r}: Kafka checkpoint at {ck} (batch {ckpt.get('batch')}); LMDB holds no state"
    if lmdb_pos.order_key == ck.order_key:
        return f"bridge {name!r}: Kafka checkpoint and LMDB in sync at {ck} (batch {ckpt.get('batch')})"
    rel = "behind" if lmdb_pos < ck else "AHEAD of"
    return (f"bridge {name!r}: LMDB at {lmdb_pos} is {rel} the Kafka checkpoint at {ck} (batch {ckpt.get('batch')})"
            + ("; a running bridge re-applies it without publishing" if rel == "behind" else ""))


if __name__ == "__main__":
    sys.exit(main())
