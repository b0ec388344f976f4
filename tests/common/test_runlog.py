"""ops.runs: a row when a run starts, the same row completed at its end, dead runs killed."""

from __future__ import annotations

import json
import subprocess

from common import runlog
from common.runlog import Run, forget_run, new_run_id, start_run, write_run
from common.tables import OPS_RUNS


def _runs(spark, config) -> dict[str, tuple]:
    rows = spark.read.format("delta").load(OPS_RUNS.location(config.lakehouse)).collect()
    return {r.run_id: (r.job, r.status, r.rows_out, r.error) for r in rows}


def test_a_run_is_running_then_completed_in_the_same_row(spark, config) -> None:
    run = Run(job="silver", run_id=new_run_id("silver"))
    start_run(spark, config, run, own_lock=True)
    assert _runs(spark, config) == {run.run_id: ("silver", "running", 0, None)}

    run.rows_out = 7
    run.details["written"] = 7
    run.finish("succeeded")
    write_run(spark, config, run)
    assert _runs(spark, config) == {run.run_id: ("silver", "succeeded", 7, None)}
    row = spark.read.format("delta").load(OPS_RUNS.location(config.lakehouse)).first()
    details = json.loads(row.details)
    assert details["written"] == 7 and details["pid"] > 0 and details["host"] == runlog.HOST
    assert row.ended_at >= row.started_at


def test_a_later_run_marks_runs_whose_process_is_gone_as_killed(spark, config,
                                                                 monkeypatch) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer exists
    killed = Run(job="gold", run_id=new_run_id("gold"))
    with monkeypatch.context() as patch:
        patch.setattr(runlog.os, "getpid", lambda: gone.pid)
        start_run(spark, config, killed, own_lock=False)
    alive = Run(job="pca", run_id=new_run_id("pca"))  # this very process: alive
    start_run(spark, config, alive, own_lock=False)
    same_job = Run(job="pca", run_id=new_run_id("pca"))
    assert _runs(spark, config)[killed.run_id][1] == "killed"
    assert _runs(spark, config)[alive.run_id][1] == "running"

    # holding the pca lock proves the other pca run is gone, whatever its pid says
    start_run(spark, config, same_job, own_lock=True)
    runs = _runs(spark, config)
    assert {run_id: status for run_id, (_, status, _, _) in runs.items()} == {
        killed.run_id: "killed", alive.run_id: "killed", same_job.run_id: "running"}
    assert same_job.run_id in runs[alive.run_id][3] and "killed" in runs[alive.run_id][3]


def test_a_configuration_error_leaves_no_row(spark, config) -> None:
    kept = Run(job="bronze", run_id=new_run_id("bronze"))
    start_run(spark, config, kept, own_lock=True)
    refused = Run(job="train", run_id=new_run_id("train"))
    start_run(spark, config, refused, own_lock=True)
    forget_run(spark, config, refused)
    assert list(_runs(spark, config)) == [kept.run_id]
