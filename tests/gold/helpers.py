"""Shared steps of the gold tests."""

from __future__ import annotations

import json
from pathlib import Path

from bronze.job import main as bronze_main
from gold.job import main as gold_main
from silver.job import main as silver_main

OPTS = ["--set", "spark.shuffle_partitions=2"]
# Random weights on the reference engine: for tests of the plumbing, not of feature values.
RANDOM = ["--weights", "random", "--engine", "tensorflow"]


def bronze_silver(source: Path, lakehouse: Path, *bronze_extra: str) -> None:
    assert bronze_main(["--source", str(source), "--lakehouse", str(lakehouse), *OPTS,
                        *bronze_extra]) == 0
    assert silver_main(["--lakehouse", str(lakehouse), *OPTS]) == 0


def gold(lakehouse: Path, *extra: str) -> int:
    return gold_main(["--lakehouse", str(lakehouse), *OPTS, *extra])


def last_run(spark, lakehouse: Path, job: str) -> dict:
    runs = spark.read.format("delta").load(str(lakehouse / "ops" / "runs"))
    row = runs.where(runs.job == job).orderBy(runs.ended_at.desc()).first()
    result = row.asDict()
    result["details"] = json.loads(row.details)
    return result


def gold_features(spark, lakehouse: Path) -> dict:
    frame = spark.read.format("delta").load(str(lakehouse / "gold" / "image_features"))
    return {r.path: r for r in frame.collect()}
