"""Interpreter settings for the daemon: the garbage collector.

With CPython's defaults (a young collection every 700 net allocations) the bridge runs a
full collection every second or two under load, and a full collection walks every tracked
object: the imported modules, the mappings, pydantic's schemas, the open batches. Measured
at 5,000 rows/s (bench/run.py (d)): pauses of 40-150 ms every ~2 s, most of the p99
latency. tune() is called once the daemon has loaded everything it keeps for its lifetime:

* gc.collect() then gc.freeze(): what is alive now is never scanned again;
* young collections every 50,000 allocations: the pipeline makes few reference cycles
  (its records and events are plain dicts and dataclasses, freed by reference counting),
  so collecting less often costs little memory and saves the scans.

The GIL switch interval stays at CPython's 5 ms. A shorter one shortens the waits of a thread
retaking the GIL after an LMDB call, but 0.5 ms measured ~5% slower end to end (forced
switches between the main loop and the Kafka committer). py-lmdb releases the GIL around every
call, putmulti's puts included, which is why LMDB is written by the main loop, not by a thread of
its own (state/lmdb_store.py mark_committed).

CDC_BRIDGE_TUNING=0 keeps CPython's defaults (to compare, or if a custom decider makes many
reference cycles).
"""

from __future__ import annotations

import gc
import os

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 100)


def tune() -> bool:
    """Freeze what is loaded and relax the thresholds; False (nothing done) when disabled."""
    if os.environ.get("CDC_BRIDGE_TUNING", "1") == "0":
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return True
