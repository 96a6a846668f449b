"""The two ways the stages are wired (docs/scaling.md):

    embedded (cdc-bridge run):   binlog -> ingest -> apply (this process, LMDB) -> events + checkpoint
    scale-out:  cdc-bridge ingest:  binlog -> ingest -> commands topic + checkpoint
                cdc-bridge worker:  commands topic -> apply (partitions of a consumer group, LMDB + changelog) -> events

Both run the same mapping (ingest/) and the same apply code (apply/applier.py), so they publish
the same events for the same binlog.
"""

from __future__ import annotations

from typing import Any, Callable

from cdc_bridge.config import BridgeConfig
from cdc_bridge.ingest.pipeline import NON_REJECTION_REASONS, Batch, IngestPipeline, RecoveryError, StopRequested
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.observability.metrics import BridgeMetrics
from cdc_bridge.source.position import SourcePosition

__all__ = ["Bridge", "Ingest", "Batch", "RecoveryError", "StopRequested", "NON_REJECTION_REASONS"]


class Bridge(IngestPipeline):
    """Embedded mode: ingest and the apply stage in one process, without the commands topic hop."""

    def __init__(self, config: BridgeConfig, mappings: MappingSet, metrics: BridgeMetrics | None = None,
                 source_factory: Callable[[Any, SourcePosition | None], Any] | None = None,
                 fresh_start: SourcePosition | None = None) -> None:
        super().__init__(config, mappings, metrics, source_factory, fresh_start, embedded=True)


class Ingest(IngestPipeline):
    """Scale-out's first stage: commands to the commands topic, exactly once with the source checkpoint;
    the aggregate workers (apply/worker.py) apply them."""

    def __init__(self, config: BridgeConfig, mappings: MappingSet, metrics: BridgeMetrics | None = None) -> None:
        super().__init__(config, mappings, metrics, embedded=False)
