"""Silver job: label, validate and resize new bronze images; quarantine the rest.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        silver/job.py --lakehouse DIR [--env local]

(``make silver`` runs exactly this.) Reads ``bronze.images`` at its current version and
brings ``silver.images`` and ``silver.rejects`` up to date with it (see
:mod:`common.incremental`): rows of files deleted or changed upstream leave, and only the
bronze rows whose ``(path, content_hash)`` is in neither table are decoded, once.
After every run each bronze path is in exactly one of the two tables.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from bronze.tables import BRONZE_IMAGES
from common.config import Config
from common.images import DecodeLimits
from common.incremental import changes, changes_from_log, delete_stale, sync_marker
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.lake import ensure_table, table, upstream
from common.layers import Layer
from common.runlog import Run
from common.spark import session_conf, set_hadoop_setting
from common.tables import OPS_RUNS
from silver.tables import SILVER_IMAGES, SILVER_REJECTS
from silver.transform import (
    accepted_images,
    outcome_counts,
    rejected_files,
    with_decoded_image,
    with_format,
    with_label,
)

log = logging.getLogger("silver")


def refine(spark: SparkSession, config: Config, run: Run) -> None:
    """Bring silver.images / silver.rejects up to date with bronze.images."""
    bronze_table = upstream(spark, BRONZE_IMAGES, config.lakehouse,
                            "run the bronze job first (make bronze SOURCE=DIR)")
    images = ensure_table(spark, SILVER_IMAGES, config.lakehouse)
    rejects = ensure_table(spark, SILVER_REJECTS, config.lakehouse)
    bronze, version = bronze_table.pinned()
    run.details["bronze_version"] = version

    todo = changes_from_log(bronze_table, version, images, [rejects]) or changes(
        spark, bronze, [images, rejects])
    run.details["changes_from"] = todo.via
    run.rows_deleted = delete_stale(todo)
    fault_point("silver:after_delete")
    if not todo.pending:
        log.info("bronze version %d: nothing new (from the %s), %d stale rows removed",
                 version, todo.via, run.rows_deleted)
        return
    limits = DecodeLimits(config.silver.max_pixels, config.silver.min_side)
    now = datetime.now(timezone.utc)
    # Decoded once and checkpointed to local disk (150 KB a row) for the two appends.
    # A checkpoint, not a cache: appending to silver would invalidate a cached plan
    # that reads silver, and the images would be decoded again.
    # Rows per Arrow batch handed to the decoding UDF: each decoded row is 150 KB, so
    # Spark's default (10,000 rows) would hold 1.5 GB per Python worker.
    with session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch",
                      str(config.silver.arrow_batch_size)):
        work = (
            todo.rows
            .transform(with_label(config.silver.label_rule, source_roots(spark, config)))
            .transform(with_format)
            .transform(with_decoded_image(limits))
            .drop("content")  # the file's bytes: decoded, not kept in the checkpoint
            .localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)
        )
    by_outcome, by_format = outcome_counts(work)
    run.rows_out = by_outcome.get("images", 0)
    run.rows_in = sum(by_outcome.values())
    run.rows_rejected = run.rows_in - run.rows_out
    run.details["outcomes"] = _counts(by_outcome)
    run.details["formats"] = _counts(by_format)
    log.info("files by outcome: %s; by format: %s", run.details["outcomes"],
             run.details["formats"])
    log.info(
        "bronze version %d: %d rows to process (%d usable, %d rejected; from the %s), "
        "%d stale rows removed",
        version, run.rows_in, run.rows_out, run.rows_rejected, todo.via, run.rows_deleted,
    )
    if run.rows_in:
        # Small row groups let gold split silver files into small tasks.
        set_hadoop_setting(spark, "parquet.block.size", config.silver.row_group_bytes)
        fault_point("silver:before_commit")
        # A table with no new rows is not written: the write would read the checkpoint
        # and run a Spark job only for Delta to find no file to commit. silver.images
        # comes last: its commit carries the marker that lets the next run read only
        # bronze's new files (common.incremental.changes_from_log).
        if run.rows_rejected:
            rejects.append(work.transform(rejected_files(run.run_id, now)), run.run_id)
        fault_point("silver:between_commits")
        if run.rows_out:
            marker = sync_marker(run.run_id, bronze_table, version, [rejects])
            with session_conf(spark, "spark.sql.parquet.compression.codec",
                              config.silver.image_codec):
                images.append(work.transform(accepted_images(run.run_id, now)), marker)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def source_roots(spark: SparkSession, config: Config):  # noqa: ANN201 - a DataFrame
    """bronze run id -> the ``source_uri`` it listed (its ``ops.runs`` row)."""
    from pyspark.sql import functions as F

    runs = table(spark, OPS_RUNS, config.lakehouse)
    if not runs.exists():
        return spark.createDataFrame([], "run_id string, source_uri string")
    return (runs.read().where(F.col("job") == "bronze")
            .select("run_id", F.get_json_object("details", "$.source_uri").alias("source_uri"))
            .where(F.col("source_uri").isNotNull()))


LAYER = Layer("silver", body=lambda config, options: refine)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Decode, label and validate new bronze images into silver.")
    parsed = parse_or_exit(parser, argv, config_from_args)
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    return run_job("silver", config, refine, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
