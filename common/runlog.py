"""The run log: one row in ``ops.runs`` per job run, successful or not."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from common.config import Config
from common.spark import ensure_table, local_frame
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


def write_run(spark: SparkSession, config: Config, run: Run) -> None:
    """Append ``run`` to ``ops.runs``; a failure to log is reported, never raised."""
    try:
        location = ensure_table(spark, OPS_RUNS, config.lakehouse)
        row = (
            run.job,
            run.run_id,
            run.status,
            run.started_at,
            datetime.now(timezone.utc),
            round(run.seconds, 3),
            run.rows_in,
            run.rows_out,
            run.rows_rejected,
            run.rows_deleted,
            run.rows_per_second,
            run.model_seconds,
            spark.sparkContext.applicationId,
            json.dumps(run.details, sort_keys=True, default=str),
            run.error,
        )
        frame = local_frame(spark, [row], OPS_RUNS.schema)
        frame.write.format("delta").mode("append").save(location)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
        log.warning("could not record run %s in %s: %s", run.run_id, OPS_RUNS.name, exc)
