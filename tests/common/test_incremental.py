"""common/incremental.py: which upstream rows a run still has to process."""

from __future__ import annotations

from pathlib import Path

from common.incremental import keys_of, pending


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
    result = pending(upstream, keys_of(done))
    assert sorted((r.path, r.payload) for r in result.collect()) == [("b", "B")]
    r2_files = {f for f in upstream.where("run_id = 'r2'").inputFiles()}
    assert r2_files and not r2_files & set(result.inputFiles())  # r2's files are skipped

    assert pending(upstream, keys_of(upstream)).collect() == []
