"""Prometheus metrics of the bridge. Every name here is documented in docs/operations.md
and used by deploy/grafana/dashboard.json and deploy/prometheus/alerts.yml (a test checks that)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from cdc_bridge.observability.cpu import ThreadCpuCollector

# Latency buckets from 5 ms to 60 s: the interesting range for CDC lag.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10, 30, 60)


# Dead-letter reasons that are not an aggregate's rejection of a command: the mapping stage's,
# the held-children bounds' (orphan) and the publisher's (too_large, see sink/publisher.py).
# Every other reason is a rejection and is also counted in cdc_bridge_rejections_total.
NON_REJECTION_REASONS = frozenset({"coercion_failed", "null_key", "missing_column", "bad_row", "orphan", "too_large"})


class BridgeMetrics:
    """All metrics in one object with its own registry, so tests can run several bridges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.info = Info("cdc_bridge", "Bridge build and identity", registry=r)
        # source
        self.lag_seconds = Gauge(
            "cdc_bridge_source_lag_seconds",
            "Seconds between the commit time of the last source transaction read and now (0 when idle and caught up)",
            registry=r,
        )
        self.source_position = Info(
            "cdc_bridge_source_position", "Last source position committed to Kafka (gtid, binlog file, offset)", registry=r
        )
        self.binlog_file_index = Gauge(
            "cdc_bridge_source_binlog_file_index", "Sequence number of the binlog file of the last committed position", registry=r
        )
        self.binlog_offset = Gauge(
            "cdc_bridge_source_binlog_offset_bytes", "Offset in the binlog file of the last committed position", registry=r
        )
        self.source_transactions = Counter(
            "cdc_bridge_source_transactions", "Committed source transactions read from the binlog", registry=r
        )
        self.source_rows = Counter("cdc_bridge_source_rows", "Row changes read from the binlog", ["table"], registry=r)
        self.source_connected = Gauge("cdc_bridge_source_connected", "1 while the binlog connection is up", registry=r)
        # mapping / aggregates
        self.commands = Counter(
            "cdc_bridge_commands", "Commands produced from row changes", ["table", "operation"], registry=r
        )
        self.events_published = Counter(
            "cdc_bridge_events_published", "Domain events committed to Kafka", ["aggregate", "event_type"], registry=r
        )
        self.change_records = Counter(
            "cdc_bridge_change_records_published",
            "Debezium-compatible change records committed to Kafka (change_stream; tombstones not counted)",
            ["table"], registry=r,
        )
        self.dead_letters = Counter(
            "cdc_bridge_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.rejections = Counter(
            "cdc_bridge_rejections", "Commands rejected by an aggregate", ["aggregate", "reason"], registry=r
        )
        self.held_children = Gauge(
            "cdc_bridge_held_children", "Children held in state until their parent arrives", registry=r
        )
        self.held_oldest_age = Gauge(
            "cdc_bridge_held_children_oldest_age_seconds", "Age of the oldest held child (source time)", registry=r
        )
        # state
        self.lmdb_size = Gauge("cdc_bridge_lmdb_size_bytes", "Bytes used by the LMDB state store", registry=r)
        self.lmdb_map_used = Gauge(
            "cdc_bridge_lmdb_map_used_ratio", "Fraction of the LMDB map size in use (grows automatically)", registry=r
        )
        # sink
        self.kafka_commit_seconds = Histogram(
            "cdc_bridge_kafka_commit_duration_seconds", "Duration of Kafka transaction commits", buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "cdc_bridge_end_to_end_latency_seconds",
            "Time from source commit to the events being committed in Kafka",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batches = Counter("cdc_bridge_batches", "Kafka transactions committed", registry=r)
        self.batch_aborts = Counter("cdc_bridge_batch_aborts", "Kafka transactions aborted and redone", registry=r)
        self.kafka_connected = Gauge("cdc_bridge_kafka_connected", "1 while the Kafka producer is usable", registry=r)
        # snapshot
        self.snapshot_rows = Counter("cdc_bridge_snapshot_rows", "Existing rows read by the snapshot", registry=r)
        self.snapshot_progress = Gauge(
            "cdc_bridge_snapshot_progress_ratio", "Snapshot progress, 0..1 (estimated from table statistics); 1 when done",
            registry=r,
        )
        # aggregate workers (scale-out, docs/scaling.md); the series of a partition leave with it
        self.worker_partitions = Gauge(
            "cdc_bridge_worker_partitions", "Commands partitions this worker owns (restored and processing)", registry=r
        )
        self.worker_offset = Gauge(
            "cdc_bridge_worker_partition_offset", "Next offset of the commands partition this worker committed",
            ["partition"], registry=r,
        )
        self.worker_lag_records = Gauge(
            "cdc_bridge_worker_partition_lag_records", "Records of the commands partition not yet applied",
            ["partition"], registry=r,
        )
        self.worker_lag_seconds = Gauge(
            "cdc_bridge_worker_partition_lag_seconds",
            "Seconds between now and the source commit time of the last record applied from the partition",
            ["partition"], registry=r,
        )
        self.restore_progress = Gauge(
            "cdc_bridge_worker_restore_progress_ratio", "Restore of a partition's state from the changelog, 0..1",
            ["partition"], registry=r,
        )
        self.restored_records = Counter(
            "cdc_bridge_worker_restored_records", "Changelog records written into local state by restores", registry=r
        )
        self.restores = Counter(
            "cdc_bridge_worker_restores",
            "Partitions assigned, by what their state needed: current | incremental | full | none", ["kind"], registry=r
        )
        self.restore_seconds = Histogram(
            "cdc_bridge_worker_restore_duration_seconds", "Duration of partition restores",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800), registry=r,
        )
        self.rebalances = Counter(
            "cdc_bridge_worker_rebalances", "Partitions assigned, revoked or lost in rebalances", ["event"], registry=r
        )
        # health
        self.reconnects = Counter(
            "cdc_bridge_reconnects", "Reconnections by component and reason", ["component", "reason"], registry=r
        )
        self.errors = Counter("cdc_bridge_errors", "Errors by kind", ["kind"], registry=r)
        self.ready = Gauge("cdc_bridge_ready", "1 when connected to the database and Kafka and lag is below the threshold", registry=r)
        self.last_loop_timestamp = Gauge(
            "cdc_bridge_last_loop_timestamp_seconds", "Wall-clock time the main loop last made progress or ticked", registry=r
        )
        # CPU by thread, read at scrape time; the bridge tells it which thread and process are which
        self.cpu = ThreadCpuCollector()
        r.register(self.cpu)

    def count_outcome(self, events: list, dead_letters: list, too_large: Sequence = ()) -> None:
        """Counters of published events and dead letters (embedded bridge and workers alike). too_large: the
        events the publisher sent to the dead-letter topic instead (their topic's size limit)."""
        counts: dict[tuple[str, str], int] = {}
        for ev in events:
            k = (ev.aggregate, ev.event_type)
            counts[k] = counts.get(k, 0) + 1
        for dl in too_large:
            k = (dl.aggregate, (dl.record or {}).get("event_type"))
            counts[k] = counts.get(k, 0) - 1
        for (aggregate, event_type), n in counts.items():
            if n > 0:
                self.events_published.labels(aggregate, event_type).inc(n)
        for dl in [*dead_letters, *too_large]:
            self.dead_letters.labels(dl.reason).inc()
            if dl.aggregate and dl.reason not in NON_REJECTION_REASONS:
                self.rejections.labels(dl.aggregate, dl.reason).inc()
