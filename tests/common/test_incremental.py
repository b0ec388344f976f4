"""common/incremental.py: which upstream rows a run still has to process, which target
rows are stale; what common.delta_log reads of a table's log."""

from __future__ import annotations

import os
from pathlib import Path

from delta.tables import DeltaTable

from common.config import local_path
from common.delta_log import data_files, latest_version, table_state
from common.incremental import changes, changes_from_log, delete_stale, last_marker, sync_marker
from common.lake import Table
from common.spark import session_conf

KEY_SCHEMA = "path string, content_hash string"


def _delta(spark, location: Path, rows: list, schema: str, mode: str = "overwrite") -> str:  # noqa: ANN001
    spark.createDataFrame(rows, schema).write.format("delta").mode(mode).save(str(location))
    return str(location)


def _t(spark, location: str) -> Table:  # noqa: ANN001
    return Table(spark, location)


def _keys(spark, location: str) -> list[tuple]:  # noqa: ANN001
    return sorted(
        (r.path, r.content_hash)
        for r in spark.read.format("delta").load(location).select("path", "content_hash").collect()
    )


def test_changes_finds_exactly_the_pending_keys_and_reads_only_their_files(
    spark, tmp_path: Path
) -> None:
    schema = "path string, content_hash string, payload string, run_id string"
    # Two appends = files of run r1 and files of run r2 (Delta keeps min/max per file).
    location = _delta(spark, tmp_path / "upstream",
                      [("a", "1", "A", "r1"), ("b", "2", "B", "r1"), ("c", None, "C", "r1")],
                      schema)
    _delta(spark, tmp_path / "upstream", [("d", "4", "D", "r2")], schema, mode="append")
    upstream = spark.read.format("delta").load(location)

    # a and c (null hash, compared null-safely) are done; b of the same run is not; d's
    # run is done entirely; b with another hash does not count as b (and is stale).
    done = _delta(spark, tmp_path / "done",
                  [("a", "1"), ("c", None), ("d", "4"), ("b", "other")], KEY_SCHEMA)
    todo = changes(spark, upstream, [_t(spark, done)])
    assert sorted((r.path, r.payload) for r in todo.rows.collect()) == [("b", "B")]
    assert todo.pending == 1
    assert todo.stale == {done: 1}
    r2_files = set(upstream.where("run_id = 'r2'").inputFiles())
    assert r2_files and not r2_files & set(todo.rows.inputFiles())  # r2's files are skipped

    everything = _delta(spark, tmp_path / "everything",
                        [("a", "1"), ("b", "2"), ("c", None), ("d", "4")], KEY_SCHEMA)
    todo = changes(spark, upstream, [_t(spark, everything)])
    assert (todo.rows.collect(), todo.pending, todo.stale) == ([], 0, {everything: 0})

    nothing = _delta(spark, tmp_path / "nothing", [], KEY_SCHEMA)
    todo = changes(spark, upstream, [_t(spark, nothing)])
    assert todo.pending == 4
    assert sorted((r.path, r.payload) for r in todo.rows.collect()) == [
        ("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]


def test_changes_and_delete_stale_across_two_targets(spark, tmp_path: Path) -> None:
    # silver's case: each upstream key belongs in one of two tables. x left upstream
    # (stale in the first), y changed its hash (stale in the second, pending anew), z is
    # in both targets and not upstream (stale in both), u is in neither (pending).
    upstream = spark.read.format("delta").load(_delta(
        spark, tmp_path / "upstream",
        [("k", "1", "r1"), ("m", None, "r1"), ("y", "new", "r2"), ("u", "5", "r2")],
        "path string, content_hash string, run_id string"))
    first = _delta(spark, tmp_path / "first", [("k", "1"), ("x", "9"), ("z", "7")], KEY_SCHEMA)
    second = _delta(spark, tmp_path / "second", [("m", None), ("y", "old"), ("z", "7")],
                    KEY_SCHEMA)

    todo = changes(spark, upstream, [_t(spark, first), _t(spark, second)])
    assert todo.stale == {first: 2, second: 2}
    assert todo.pending == 2
    assert sorted(r.path for r in todo.rows.collect()) == ["u", "y"]

    assert delete_stale(todo) == 4
    assert _keys(spark, first) == [("k", "1")]
    assert _keys(spark, second) == [("m", None)]
    # Nothing left to delete: no commit at all.
    versions = latest_version(spark, first), latest_version(spark, second)
    again = changes(spark, upstream, [_t(spark, first), _t(spark, second)])
    assert again.stale == {first: 0, second: 0} and delete_stale(again) == 0
    assert (latest_version(spark, first), latest_version(spark, second)) == versions


def _join_of(frame) -> str:  # noqa: ANN001 - a DataFrame
    plan = frame._jdf.queryExecution().executedPlan().toString()
    joins = [name for name in ("BroadcastHashJoin", "SortMergeJoin", "ShuffledHashJoin")
             if name in plan]
    assert len(joins) == 1, plan
    return joins[0]


def test_pending_rows_broadcast_the_keys_by_their_real_size_not_the_payload_s(
    spark, tmp_path: Path
) -> None:
    # Rows whose payload dwarfs their keys, like silver's images: the planner estimates
    # the checkpointed keys from the scan's file sizes, so without measuring them it
    # would shuffle the payload rows for the semi-join.
    rows = [(f"file:/photos/{i}.jpg", f"h{i}", os.urandom(1 << 20), "r1") for i in range(6)]
    upstream = spark.read.format("delta").load(_delta(
        spark, tmp_path / "upstream", rows,
        "path string, content_hash string, payload binary, run_id string"))
    done = _delta(spark, tmp_path / "done", [(p, h) for p, h, _, _ in rows[:3]], KEY_SCHEMA)
    with session_conf(spark, "spark.sql.autoBroadcastJoinThreshold", str(256 << 10)):
        result = changes(spark, upstream, [_t(spark, done)]).rows
        assert _join_of(result) == "BroadcastHashJoin"
        assert sorted((r.path, bytes(r.payload)) for r in result.collect()) == [
            (path, payload) for path, _, payload, _ in rows[3:]]
    # Keys over the threshold (3 pending rows of ~80 bytes > 100 bytes) are left to the
    # planner, which reads the scan's size.
    with session_conf(spark, "spark.sql.autoBroadcastJoinThreshold", "100"):
        result = changes(spark, upstream, [_t(spark, done)]).rows
        assert _join_of(result) == "SortMergeJoin"
        assert sorted(r.path for r in result.collect()) == [p for p, _, _, _ in rows[3:]]


def test_latest_version_reads_the_log_names(spark, tmp_path: Path) -> None:
    location = tmp_path / "table"
    assert latest_version(spark, str(location)) is None  # no folder
    (location / "_delta_log").mkdir(parents=True)
    assert latest_version(spark, str(location)) is None  # a log with no version yet
    for i in range(3):
        _delta(spark, location, [(str(i), str(i))], KEY_SCHEMA, mode="append")
    log = location / "_delta_log"
    # What is not a committed version does not count: a commit still being written under
    # its temporary name, a checksum, the checkpoint pointer.
    (log / ".00000000000000000007.json.0f1e.tmp").write_text("{}")
    (log / "00000000000000000009.crc").write_text("{}")
    assert latest_version(spark, str(location)) == 2
    frame, version = _t(spark, str(location)).pinned()
    assert version == 2 and sorted(r.path for r in frame.collect()) == ["0", "1", "2"]
    # A log whose old commits were cleaned up after a checkpoint still has its newest.
    spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ('x.note' = 'v3')")
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, str(location)).toDF()  # load the snapshot
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
        spark._jsparkSession, str(location)).checkpoint()
    for old in ("00000000000000000000.json", "00000000000000000001.json"):
        (log / old).unlink()
    assert latest_version(spark, str(location)) == 3


UPSTREAM_SCHEMA = "path string, content_hash string, payload string, run_id string"


def _marked_target(spark, tmp_path: Path) -> tuple[str, str, str, str]:  # noqa: ANN001
    """An upstream table of run r1, a target in step with it whose append carries the
    marker, and another target (``side``) that the marker names."""
    upstream = _delta(spark, tmp_path / "up",
                      [("a", "1", "A", "r1"), ("b", None, "B", "r1")], UPSTREAM_SCHEMA)
    side = _delta(spark, tmp_path / "side", [("b", None)], KEY_SCHEMA)
    target = _delta(spark, tmp_path / "target", [], KEY_SCHEMA)
    marker = sync_marker("t1", _t(spark, upstream), latest_version(spark, upstream),
                         [_t(spark, side)], model="m1")
    _t(spark, target).append(spark.createDataFrame([("a", "1")], KEY_SCHEMA), marker)
    return upstream, target, side, marker


def test_a_run_after_a_marked_append_reads_only_the_files_appended_upstream(
    spark, tmp_path: Path
) -> None:
    upstream, target, side, marker = _marked_target(spark, tmp_path)
    assert last_marker(_t(spark, target))["run_id"] == "t1"
    assert last_marker(_t(spark, target))["tables"] == {side: {
        "id": table_state(spark, side).id, "version": 0}}
    also = [_t(spark, side)]
    since = latest_version(spark, upstream)
    todo = changes_from_log(_t(spark, upstream), since, _t(spark, target), also, model="m1")
    assert (todo.via, todo.pending, todo.rows.collect()) == ("log", 0, [])

    # two more appends upstream, of runs r2 and r3: exactly their rows are pending
    _delta(spark, tmp_path / "up", [("c", "3", "C", "r2"), ("d", "4", "D", "r2")],
           UPSTREAM_SCHEMA, mode="append")
    _delta(spark, tmp_path / "up", [("e", "5", "E", "r3")], UPSTREAM_SCHEMA, mode="append")
    version = latest_version(spark, upstream)
    todo = changes_from_log(_t(spark, upstream), version, _t(spark, target), also, model="m1")
    assert todo.via == "log" and todo.pending == 3 and todo.stale == {target: 0, side: 0}
    assert sorted(tuple(r) for r in todo.rows.collect()) == [
        ("c", "3", "C", "r2"), ("d", "4", "D", "r2"), ("e", "5", "E", "r3")]
    assert todo.bytes == sum(os.path.getsize(f.removeprefix("file:"))
                             for f in todo.rows.inputFiles())
    # the same rows as the comparison of every key finds
    full = changes(spark, _t(spark, upstream).pinned()[0], [_t(spark, target), _t(spark, side)])
    assert sorted(tuple(r) for r in full.rows.collect()) == sorted(
        tuple(r) for r in todo.rows.collect())
    # pinned: a version in between sees only r2's rows
    todo = changes_from_log(_t(spark, upstream), version - 1, _t(spark, target), also, model="m1")
    assert sorted(r.path for r in todo.rows.collect()) == ["c", "d"]
    # what the marker must also say
    assert changes_from_log(_t(spark, upstream), version, _t(spark, target), also,
                            model="m2") is None


def test_the_keys_are_compared_whenever_the_log_cannot_show_the_changes(
    spark, tmp_path: Path
) -> None:
    upstream, target, side, _ = _marked_target(spark, tmp_path)
    also = [_t(spark, side)]

    def from_log():  # noqa: ANN202
        return changes_from_log(_t(spark, upstream), latest_version(spark, upstream),
                                _t(spark, target), also)

    assert from_log() is not None
    # another target moved on after the marked append (a run killed between its commits)
    _delta(spark, tmp_path / "side", [("x", "9")], KEY_SCHEMA, mode="append")
    assert from_log() is None
    upstream, target, side, _ = _marked_target(spark, tmp_path / "2")
    also = [_t(spark, side)]
    # upstream deleted a row (a file removed or replaced): not a plain append
    _delta(spark, Path(upstream), [("c", "3", "C", "r2")], UPSTREAM_SCHEMA, mode="append")
    assert from_log() is not None
    DeltaTable.forPath(spark, upstream).delete("path = 'a'")
    assert from_log() is None
    # the target's latest commit is not a marked append (a stale row deleted)
    upstream, target, side, _ = _marked_target(spark, tmp_path / "3")
    also = [_t(spark, side)]
    DeltaTable.forPath(spark, target).delete("path = 'a'")
    assert latest_version(spark, target) == 2 and from_log() is None
    # an upstream table made again at the same path (its id changed)
    upstream, target, side, _ = _marked_target(spark, tmp_path / "4")
    also = [_t(spark, side)]
    _delta(spark, Path(upstream), [("a", "1", "A", "r1")], UPSTREAM_SCHEMA)  # overwrite
    assert from_log() is None
    import shutil

    shutil.rmtree(upstream)
    _delta(spark, Path(upstream), [("a", "1", "A", "r1"), ("b", None, "B", "r1")],
           UPSTREAM_SCHEMA)
    assert latest_version(spark, upstream) == 0 and from_log() is None
    # a commit of the range cleaned up, or its checksum missing
    upstream, target, side, _ = _marked_target(spark, tmp_path / "5")
    also = [_t(spark, side)]
    _delta(spark, Path(upstream), [("c", "3", "C", "r2")], UPSTREAM_SCHEMA, mode="append")
    (Path(upstream) / "_delta_log" / "00000000000000000001.crc").unlink()
    assert from_log() is None
    # a target without a marker (appended with a plain run id)
    plain = _delta(spark, tmp_path / "plain", [], KEY_SCHEMA)
    _t(spark, plain).append(spark.createDataFrame([("a", "1")], KEY_SCHEMA), "t1")
    assert last_marker(_t(spark, plain)) is None


def test_data_files_are_the_tables_files_or_none(spark, tmp_path: Path) -> None:
    """The checksum's file list, when it holds the table's rows exactly, equals the file
    list Spark's own snapshot reads: after appends, a delete and an overwrite."""
    schema = "path string, content_hash string, payload string, run_id string"
    location = _delta(spark, tmp_path / "t ü#1", [("a", "1", "A", "r1"), ("b", "2", "B", "r1")],
                      schema)

    def spark_files() -> list[str]:
        files = spark.read.format("delta").load(location).inputFiles()
        return sorted(str(local_path(f)) for f in files)

    def checksum_files() -> list[str] | None:
        found = data_files(spark, location)
        return None if found is None else sorted(found[1])

    assert checksum_files() == spark_files() != []
    _delta(spark, Path(location), [("c", "3", "C", "r2")], schema, mode="append")
    DeltaTable.forPath(spark, location).delete("path = 'a'")  # rewrites a file
    state, _ = data_files(spark, location)
    assert state.version == latest_version(spark, location) == 2
    assert checksum_files() == spark_files() and len(spark_files()) == 2
    _delta(spark, Path(location), [("d", "4", "D", "r3")], schema)  # overwrite
    assert checksum_files() == spark_files() != []

    # No list when Delta leaves it out of the checksum (more files than its threshold).
    with session_conf(spark, "spark.databricks.delta.allFilesInCrc.thresholdNumFiles", "1"):
        _delta(spark, Path(location), [("e", "5", "E", "r4")], schema, mode="append")
    assert len(spark_files()) > 1 and data_files(spark, location) is None
    # Nor without the checksum file.
    _delta(spark, Path(location), [("f", "6", "F", "r5")], schema, mode="append")
    assert checksum_files() == spark_files()
    (Path(location) / "_delta_log" / "00000000000000000005.crc").unlink()
    assert data_files(spark, location) is None
    # Nor when reading the files as Parquet would resurrect deleted rows.
    dv = tmp_path / "dv"
    spark.sql(f"CREATE TABLE delta.`{dv}` (path string) USING delta "
              "TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.createDataFrame([("a",), ("b",)], "path string").write.format("delta").mode(
        "append").save(str(dv))
    assert data_files(spark, str(dv)) is None
