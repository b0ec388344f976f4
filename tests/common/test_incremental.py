"""common/incremental.py: which upstream rows a run still has to process."""

from __future__ import annotations

import os
from pathlib import Path

from common.incremental import keys_of, pending, pending_rows
from common.spark import session_conf


def test_pending_returns_exactly_the_missing_keys_and_reads_only_their_files(
    spark, tmp_path: Path
) -> None:
    location = str(tmp_path / "upstream")
    schema = "path string, content_hash string, payload string, run_id string"
    # Two appends = files of run r1 and files of run r2 (Delta keeps min/max per file).
    spark.createDataFrame([("a", "1", "A", "r1"), ("b", "2", "B", "r1"), ("c", None, "C", "r1")],
                          schema).write.format("delta").save(location)
    spark.createDataFrame([("d", "4", "D", "r2")], schema).write.format("delta").mode(
        "append").save(location)
    upstream = spark.read.format("delta").load(location)

    # a and c (null hash, compared null-safely) are done; b of the same run is not; d's
    # run is done entirely; b with another hash does not count as b.
    done = spark.createDataFrame([("a", "1"), ("c", None), ("d", "4"), ("b", "other")],
                                 "path string, content_hash string")
    result, count = pending_rows(upstream, keys_of(done))
    assert sorted((r.path, r.payload) for r in result.collect()) == [("b", "B")]
    assert count == 1
    r2_files = {f for f in upstream.where("run_id = 'r2'").inputFiles()}
    assert r2_files and not r2_files & set(result.inputFiles())  # r2's files are skipped

    assert pending(upstream, keys_of(upstream)).collect() == []
    nothing_done = spark.createDataFrame([], "path string, content_hash string")
    result, count = pending_rows(upstream, nothing_done)
    assert count == 4
    assert sorted((r.path, r.payload) for r in result.collect()) == [
        ("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]
    assert pending_rows(upstream, keys_of(upstream))[1] == 0


def _join_of(frame) -> str:  # noqa: ANN001 - a DataFrame
    plan = frame._jdf.queryExecution().executedPlan().toString()
    joins = [name for name in ("BroadcastHashJoin", "SortMergeJoin", "ShuffledHashJoin")
             if name in plan]
    assert len(joins) == 1, plan
    return joins[0]


def test_pending_broadcasts_the_missing_keys_by_their_real_size_not_the_payload_s(
    spark, tmp_path: Path
) -> None:
    # Rows whose payload dwarfs their keys, like silver's images: the planner estimates
    # the checkpointed keys from the scan's file sizes, so without measuring them it
    # would shuffle the payload rows for the semi-join.
    location = str(tmp_path / "upstream")
    rows = [(f"file:/photos/{i}.jpg", f"h{i}", os.urandom(1 << 20), "r1") for i in range(6)]
    spark.createDataFrame(rows, "path string, content_hash string, payload binary, "
                                "run_id string").write.format("delta").save(location)
    upstream = spark.read.format("delta").load(location)
    done = keys_of(upstream.where("path < 'file:/photos/3'"))
    with session_conf(spark, "spark.sql.autoBroadcastJoinThreshold", str(256 << 10)):
        result = pending(upstream, done)
        assert _join_of(result) == "BroadcastHashJoin"
        assert sorted((r.path, bytes(r.payload)) for r in result.collect()) == [
            (path, payload) for path, _, payload, _ in rows[3:]]
    # Keys over the threshold (3 missing rows of ~80 bytes > 100 bytes) are left to the
    # planner, which reads the scan's size.
    with session_conf(spark, "spark.sql.autoBroadcastJoinThreshold", "100"):
        result = pending(upstream, done)
        assert _join_of(result) == "SortMergeJoin"
        assert sorted(r.path for r in result.collect()) == [p for p, _, _, _ in rows[3:]]
