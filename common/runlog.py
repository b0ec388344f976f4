"""The run log: one row in ``ops.runs`` per job run, successful or not.

A run appends its row when it starts (``running``; its ``ended_at`` is then its start)
and completes the same row at the end (``succeeded``, ``failed``, ``refused``). A run
killed with SIGKILL cannot complete its row, so each start looks for ``running`` rows
whose process is gone and marks them ``killed``: rows of its own job (it holds that
job's lock, so no other run of it can be alive) and rows whose process ran on this host
and no longer exists.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from common.config import Config
from common.lake import Table, ensure_table, table
from common.spark import local_frame
from common.storage import local_path, storage_of
from common.tables import OPS_RUNS

log = logging.getLogger(__name__)


def new_run_id(job: str) -> str:
    """Sortable and unique: ``bronze-20261123T210600Z-1a2b3c4d``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{job}-{stamp}-{uuid.uuid4().hex[:8]}"


@dataclass
class Run:
    """Counters of one run; the job fills them in, :func:`write_run` records them."""

    job: str
    run_id: str
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    started_clock: float = field(default_factory=time.monotonic)
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    rows_deleted: int = 0
    model_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    seconds: float = 0.0
    logged: bool = False  # its running row is in ops.runs

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.seconds = time.monotonic() - self.started_clock

    @property
    def rows_per_second(self) -> float | None:
        work = self.rows_out + self.rows_rejected
        busy = self.model_seconds if self.model_seconds else self.seconds
        return round(work / busy, 2) if work and busy > 0 else None

    def summary(self) -> str:
        parts = [
            f"{self.job} {self.status} in {self.seconds:.1f}s (run {self.run_id})",
            f"in={self.rows_in} out={self.rows_out} rejected={self.rows_rejected} "
            f"deleted={self.rows_deleted}",
        ]
        if self.rows_per_second:
            basis = "model time" if self.model_seconds else "wall time"
            parts.append(f"{self.rows_per_second} rows/s ({basis})")
        for key, value in self.details.items():
            parts.append(f"{key}={value}")
        if self.error:
            parts.append(f"error: {self.error}")
        return " | ".join(parts)


HOST = socket.gethostname()


def _row(spark: SparkSession, run: Run, ended_at: datetime) -> tuple:
    details = {**run.details, "host": HOST, "pid": os.getpid()}
    return (
        run.job,
        run.run_id,
        run.status,
        run.started_at,
        ended_at,
        round(run.seconds, 3),
        run.rows_in,
        run.rows_out,
        run.rows_rejected,
        run.rows_deleted,
        run.rows_per_second,
        run.model_seconds,
        spark.sparkContext.applicationId,
        json.dumps(details, sort_keys=True, default=str),
        run.error,
    )


def start_run(spark: SparkSession, config: Config, run: Run, *, own_lock: bool) -> None:
    """Append ``run``'s ``running`` row and mark the rows of dead runs ``killed``.

    ``own_lock``: this process holds the lakehouse lock of ``run.job``, so every other
    ``running`` row of that job belongs to a process that is gone. A failure to log is
    reported, never raised.
    """
    try:
        runs = ensure_table(spark, OPS_RUNS, config.lakehouse)
        dead = _dead_runs(runs, run, own_lock=own_lock)
        runs.append(local_frame(spark, [_row(spark, run, run.started_at)], OPS_RUNS.schema))
        run.logged = True
        if dead:
            _mark_killed(runs, run, dead)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
        log.warning("could not record the start of run %s in %s: %s", run.run_id,
                    OPS_RUNS.name, exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_rows(runs: Table) -> list[tuple[str, str, str]]:
    """(job, run_id, details) of the ``running`` rows: read by pyarrow on the driver when
    the table's checksum lists its files (a few ms), else by Spark (~0.6 s)."""
    import pyarrow.parquet as pq

    listed = runs.files() if storage_of(runs.location).direct else None
    if listed is not None:
        columns = ["job", "run_id", "details", "status"]
        if not listed[1]:
            return []
        table = pq.ParquetDataset([str(local_path(f)) for f in listed[1]],
                                  filters=[("status", "=", "running")]).read(columns=columns)
        return list(zip(*(table.column(c).to_pylist() for c in columns[:3])))
    rows = runs.read().where("status = 'running'").select("job", "run_id", "details").collect()
    return [(r.job, r.run_id, r.details) for r in rows]


def _dead_runs(runs: Table, run: Run, *, own_lock: bool) -> list[str]:
    dead = []
    for job, run_id, details_text in _running_rows(runs):
        details = json.loads(details_text or "{}")
        pid = details.get("pid")
        if (own_lock and job == run.job) or (
                details.get("host") == HOST and isinstance(pid, int) and not _alive(pid)):
            dead.append(run_id)
    return dead


def _mark_killed(runs: Table, run: Run, dead: list[str]) -> None:
    from pyspark.sql import functions as F

    runs.update({"status": F.lit("killed"),
                 "error": F.lit(f"the process ended without completing this row (killed); "
                                f"found by run {run.run_id}")},
                F.col("run_id").isin(dead) & (F.col("status") == "running"))
    log.warning("ops.runs: marked %d run(s) whose process is gone as killed: %s",
                len(dead), ", ".join(dead))


def write_run(spark: SparkSession, config: Config, run: Run) -> None:
    """Complete ``run``'s row in ``ops.runs`` (append it if its start was not recorded);
    a failure to log is reported, never raised."""
    from pyspark.sql import functions as F

    try:
        row = _row(spark, run, datetime.now(timezone.utc))
        if not run.logged:
            ensure_table(spark, OPS_RUNS, config.lakehouse).append(
                local_frame(spark, [row], OPS_RUNS.schema))
            return
        runs = table(spark, OPS_RUNS, config.lakehouse)
        values = {name: F.lit(value).cast(OPS_RUNS.schema[name].dataType)
                  for name, value in zip(OPS_RUNS.schema.names, row)}
        for attempt in range(3):
            try:
                runs.update(values, F.col("run_id") == run.run_id)
                return
            except Exception as exc:  # noqa: BLE001 - a concurrent run's commit: retry
                if "Concurrent" not in type(exc).__name__ + str(exc)[:300] or attempt == 2:
                    raise
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
        log.warning("could not record run %s in %s: %s", run.run_id, OPS_RUNS.name, exc)


def forget_run(spark: SparkSession, config: Config, run: Run) -> None:
    """Remove ``run``'s ``running`` row: the run stopped on a configuration error."""
    from pyspark.sql import functions as F

    try:
        table(spark, OPS_RUNS, config.lakehouse).delete(F.col("run_id") == run.run_id,
                                                        count=False)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not remove run %s from %s: %s", run.run_id, OPS_RUNS.name, exc)
