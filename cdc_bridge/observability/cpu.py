"""CPU seconds of the bridge's threads and of its binlog reader process, read at scrape time.

The end-to-end rate is bounded by the bridge process's Python threads, which share one
interpreter lock (docs/operations.md#capacity): `rate(cdc_bridge_cpu_seconds_total{thread="main"})`
near 1 means the main loop is busy all the time, which is the bridge at capacity. Read from
/proc (Linux; elsewhere the family has no samples), only when Prometheus scrapes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Python thread name prefixes -> label (the executors name their threads "<prefix>_<n>")
_THREAD_LABELS = (("committer", "committer"),)


def _cpu_seconds(stat_path: str) -> float | None:
    """utime + stime of a /proc/<pid>[/task/<tid>]/stat file, in seconds; None if it is gone."""
    try:
        with open(stat_path) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class ThreadCpuCollector(Collector):
    """`cdc_bridge_cpu_seconds_total{thread=main|committer|other|reader}`.

    sources() gives (native id of the main loop's thread or None, pid of the reader process or None);
    the bridge sets it once it runs. "other" is the rest of the bridge process (librdkafka's
    threads, the HTTP server); "reader" the whole reader process."""

    def __init__(self, sources: Callable[[], tuple[int | None, int | None]] = lambda: (None, None)) -> None:
        self.sources = sources

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("cdc_bridge_cpu_seconds", "CPU time (user + system) of the bridge's threads and "
                                     "of its binlog reader process", labels=["thread"])
        main_tid, reader_pid = self.sources()
        by_label: dict[str, float] = {}
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            tids = []
        if tids:
            names = {t.native_id: t.name for t in threading.enumerate()}
            for tid in tids:
                seconds = _cpu_seconds(f"/proc/self/task/{tid}/stat")
                if seconds is None:
                    continue
                label = "main" if main_tid is not None and int(tid) == main_tid else "other"
                name = names.get(int(tid), "")
                for prefix, lab in _THREAD_LABELS:
                    if name.startswith(prefix):
                        label = lab
                by_label[label] = by_label.get(label, 0.0) + seconds
        if reader_pid is not None:
            seconds = _cpu_seconds(f"/proc/{reader_pid}/stat")
            if seconds is not None:
                by_label["reader"] = seconds
        for label, seconds in sorted(by_label.items()):
            family.add_metric([label], seconds)
        yield family
