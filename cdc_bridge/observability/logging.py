"""structlog setup: JSON lines when not on a terminal (containers), readable console output on one."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", json_output: bool | None = None) -> None:
    if json_output is None:
        json_output = not sys.stderr.isatty()
    lvl = getattr(logging, level.upper(), logging.INFO)
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        if json_output
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    # stdlib loggers (librdkafka's lines through confluent-kafka, pymysqlreplication) are rendered
    # like ours: one JSON object per line with level, logger and timestamp, not raw text in the stream
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer[-1]],
    ))
    handler._cdc_bridge = True   # type: ignore[attr-defined]
    root = logging.getLogger()
    for h in list(root.handlers):   # ours from an earlier call; others (pytest's capture) stay
        if getattr(h, "_cdc_bridge", False):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)
    structlog.configure(
        processors=[*processors, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # librdkafka and pymysqlreplication log through stdlib logging; keep them quieter than ours.
    logging.getLogger("pymysqlreplication").setLevel(max(lvl, logging.WARNING))
