"""Rows held by the driver reach Spark as Arrow, without Python workers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pyspark.sql import functions as F

from bronze.storage import PATH_SCHEMA
from common.spark import local_frame
from common.tables import OPS_RUNS


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _lineage(frame) -> str:  # noqa: ANN001 - a DataFrame
    return frame._jdf.queryExecution().toRdd().toDebugString()


def test_a_local_frame_keeps_every_value_without_a_python_worker(spark) -> None:
    started = datetime(2026, 11, 25, 2, 30, 1, 123456, tzinfo=timezone.utc)
    ended = datetime(2026, 11, 25, 2, 31, 2, 654321, tzinfo=timezone.utc)
    row = ("gold", "gold-20261125T023001Z-1a2b3c4d", "failed", started, ended, 61.53,
           200, None, 3, 0, None, 2.5, "local-1", '{"engine": "tflite"}', "no weights: é")
    frame = local_frame(spark, [row], OPS_RUNS.schema)

    assert [(f.name, f.dataType) for f in frame.schema.fields] == [
        (f.name, f.dataType) for f in OPS_RUNS.schema.fields]
    got = frame.select(
        *[c for c in OPS_RUNS.schema.names if c not in ("started_at", "ended_at")],
        F.unix_micros("started_at").alias("started_us"),
        F.unix_micros("ended_at").alias("ended_us"),
    ).collect()
    assert [tuple(r) for r in got] == [(
        "gold", "gold-20261125T023001Z-1a2b3c4d", "failed", 61.53, 200, None, 3, 0, None,
        2.5, "local-1", '{"engine": "tflite"}', "no weights: é",
        _micros(started), _micros(ended),
    )]
    # The reason it exists: pickled rows go through a Python RDD (a worker per task).
    assert "PythonRDD" in _lineage(spark.createDataFrame([row], OPS_RUNS.schema))
    assert "PythonRDD" not in _lineage(frame)


def test_a_local_frame_of_many_or_no_rows(spark) -> None:
    paths = [f"file:/photos/Apple {i % 7}/img_{i}.jpg" for i in range(5000)]
    frame = local_frame(spark, [(p,) for p in paths], PATH_SCHEMA)
    assert sorted(r.path for r in frame.collect()) == sorted(paths)

    empty = local_frame(spark, [], PATH_SCHEMA)
    assert empty.collect() == []
    assert empty.schema.names == ["path"]
