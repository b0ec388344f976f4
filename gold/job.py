"""Gold job: MobileNetV2 features of new silver images, and the Parquet export.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        gold/job.py --lakehouse DIR [--weights imagenet|random|PATH]
        [--engine tflite|onnx|tensorflow] [--export PATH] [--rebuild] [--env local]

(``make gold`` runs exactly this.) Reads ``silver.images`` at its current version; gold
rows whose silver row left (deleted, changed, rejected) are deleted; only silver rows
whose ``(path, content_hash)`` is not in gold yet are featurized, in one pass, and
appended. The driver loads the weights once and broadcasts them; each executor Python
worker builds the model once (see :mod:`gold.udf`). On a local lakehouse the workers
read each image from silver's files themselves, so Spark reads only silver's keys
(``gold.image_reader``, see :mod:`gold.silver_files`), and write the rows they featurized
to the table's files themselves, which the driver then commits in one Delta commit
(``gold.writer``, see :mod:`gold.writer`).

Every gold row records its model identity (name + sha256 of the weights file). A run
with other weights than the table's refuses to mix them unless ``--rebuild`` is given,
which recomputes every row with the new weights.

After each run the Parquet export (``path``, ``label``, ``features``) holds exactly the
current gold rows, published as a new version folder and one atomic pointer switch (see
:mod:`gold.export`).
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import dataclasses
import functools
import logging
import sys
import time
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.config import Config, ConfigError
from common.delta_log import Transaction, private_routes
from common.incremental import Changes, changes, changes_from_log, delete_stale, sync_marker
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.lake import Table, ensure_table, upstream
from common.layers import Layer
from common.runlog import Run
from common.spark import session_conf
from common.storage import storage_of
from gold.export import export_if_stale
from gold.model import best_batch_size, build_payload, resolve_weights
from gold.tables import GOLD_FEATURES
from gold.transform import to_gold_rows, with_features
from gold.udf import UdfMetrics, WorkerModel, features_udf
from gold.writer import features_files, open_commit, write_files
from silver.tables import SILVER_IMAGES

log = logging.getLogger("gold")


def featurize_new(spark: SparkSession, config: Config, run: Run, *, rebuild: bool) -> None:
    """Bring gold.image_features (and its export) up to date with silver.images."""
    silver_table = upstream(spark, SILVER_IMAGES, config.lakehouse,
                            "run the silver job first (make silver)")
    # Checked before any table is touched: the weights exist and which they are.
    _, identity = resolve_weights(config.gold.weights)
    run.details["model"] = identity
    run.details["engine"] = config.gold.engine
    gold = ensure_table(spark, GOLD_FEATURES, config.lakehouse)
    silver, version = silver_table.pinned()
    run.details["silver_version"] = version
    # The marker of gold's last append names its model: every row has it (each run
    # checks or sets it), so the log path needs no model check.
    todo = None if rebuild else changes_from_log(silver_table, version, gold, model=identity)
    if todo is None:
        _check_model(gold, identity, rebuild, run)
        todo = changes(spark, silver, [gold])
    run.details["changes_from"] = todo.via
    run.rows_deleted += delete_stale(todo)
    run.rows_in = todo.pending
    log.info("silver version %d: %d images to featurize (from the %s)", version, run.rows_in,
             todo.via)
    if run.rows_in:
        _featurize(spark, config, run, todo, silver_table, version, identity, gold)
    run.details["export"] = export_if_stale(spark, config, gold)


def _check_model(gold: Table, identity: str, rebuild: bool, run: Run) -> None:
    others = [r.model for r in gold.read().where(F.col("model") != identity)
              .select("model").distinct().limit(3).collect()]
    if not others:
        return
    if not rebuild:
        raise ConfigError(
            f"gold.image_features holds features of {', '.join(others)}; this run uses "
            f"{identity}. Features of different weights must not be mixed: give --rebuild "
            "to recompute every row with the new weights, or use the same weights."
        )
    run.rows_deleted += gold.delete(F.col("model") != identity)
    log.info("--rebuild: removed rows of %s", ", ".join(others))


def _featurize(spark: SparkSession, config: Config, run: Run, todo: Changes,
               silver: Table, silver_version: int, identity: str, gold: Table) -> None:
    started = time.perf_counter()
    work = todo.rows
    payload = build_payload(config.gold.engine, config.gold.weights,
                            cache=storage_of(config.lakehouse).model_cache(config.lakehouse))
    log.info("loaded %s for %s in %.1fs", identity, config.gold.engine,
             time.perf_counter() - started)
    if todo.via == "log":  # the size of the files read, silver's properties from its log
        properties, work_bytes = todo.properties, todo.bytes
    else:
        detail = silver.detail()
        properties = detail["properties"]
        # The pending rows' share of silver's bytes, pro rata.
        work_bytes = run.rows_in * detail["sizeInBytes"] // max(silver.read().count(), 1)
    reader = image_reader(config, properties)
    commit = gold_writer(spark, config, reader, gold.location)
    threads = config.gold.inference_threads or int(spark.conf.get("spark.task.cpus", "1"))
    # Every "auto" and 0 of gold's settings resolved, once: what this run uses and records.
    settings = dataclasses.replace(
        config.gold, image_reader=reader, writer="spark" if commit is None else "workers",
        inference_threads=threads,
        batch_size=config.gold.batch_size or best_batch_size(config.gold.engine, threads))
    run.details["settings"] = dataclasses.asdict(settings)
    run.details["image_reader"], run.details["writer"] = settings.image_reader, settings.writer
    broadcast = spark.sparkContext.broadcast(payload)
    metrics = UdfMetrics.create(spark)
    model = WorkerModel(broadcast, identity, settings.engine, settings.batch_size, threads,
                        metrics)
    now = datetime.now(timezone.utc)
    if commit is None:
        features = features_udf(model, from_files=settings.image_reader == "workers")
        rows = work.transform(with_features(features,
                                            from_files=settings.image_reader == "workers")
                              ).transform(to_gold_rows(identity, run.run_id, now))
    else:
        write = features_files(model, table=gold.location, run_id=run.run_id, now=now)
    fault_point("gold:before_write")
    started = time.perf_counter()
    split = _split_bytes(spark, config, work_bytes)
    run.details["split_bytes"] = split
    with session_conf(spark, "spark.sql.files.maxPartitionBytes", str(split)), \
            session_conf(spark, "spark.sql.files.openCostInBytes", str(split // 4)), \
            session_conf(spark, "spark.sql.execution.arrow.maxRecordsPerBatch",
                         str(settings.arrow_batch_size)):
        marker = sync_marker(run.run_id, silver, silver_version, model=identity)
        if commit is None:
            gold.append(rows, marker)
        else:
            files = write_files(work, write)
            written = sum(f.rows for f in files)
            if written != run.rows_in:  # nothing is committed then
                raise RuntimeError(f"gold's workers wrote {written} rows for {run.rows_in} "
                                   "pending images; nothing was committed: run gold again")
            fault_point("gold:before_commit")  # files written, none in the table yet
            commit.add(files, marker)
            run.details["files"] = len(files)
    run.model_seconds = round(time.perf_counter() - started, 3)
    fault_point("gold:after_commit")
    run.rows_out = run.rows_in
    run.details.update(
        engine_builds=metrics.engine_builds.value,
        model_calls=metrics.model_calls.value,
        engine_seconds=round(metrics.model_seconds.value, 3),
        threads_per_worker=threads,
        batch_size=settings.batch_size,
    )
    broadcast.unpersist()
    log.info(
        "featurized %d images in %.1fs (%.1f images/s); model built %d time(s), %d model calls",
        run.rows_out, run.model_seconds, run.rows_out / max(run.model_seconds, 1e-9),
        metrics.engine_builds.value, metrics.model_calls.value,
    )


def gold_writer(spark: SparkSession, config: Config, reader: str,
                location: str) -> Transaction | None:
    """The commit that will add the workers' files to gold (``gold.writer`` workers, or
    auto where it can be: see :mod:`gold.writer`), or None when Spark writes gold."""
    if config.gold.writer == "spark":
        return None
    if reader != "workers":
        if config.gold.writer == "workers":
            raise ConfigError(
                "gold.writer is workers, but Spark reads silver's images this run (silver.images "
                "uses Delta column mapping); the workers write the rows of the images they "
                "read themselves. Use auto or spark for gold.writer.")
        return None
    commit, why = open_commit(spark, location)
    if commit is None:
        if not private_routes(spark):
            return None  # a Delta release not tested: said once, Spark writes
        if config.gold.writer == "workers":
            raise ConfigError(
                f"gold.writer is workers, but gold.image_features at {location}: {why}; only "
                "Spark's Delta writer applies such a table's rules. Use auto or spark.")
        log.info("Spark writes gold's files: gold.image_features %s", why)
    return commit


def image_reader(config: Config, silver_properties: dict) -> str:
    """``workers`` or ``spark``: who reads silver's images this run (gold.image_reader).

    ``auto`` is workers on a local lakehouse whose silver stores columns under their own
    names; Spark on an object store, or when silver uses Delta column mapping (its files
    then name columns by ids that only Delta resolves).
    """
    mapped = (silver_properties or {}).get("delta.columnMapping.mode", "none") != "none"
    if config.gold.image_reader == "workers" and mapped:
        raise ConfigError(
            "gold.image_reader is workers, but silver.images uses Delta column mapping "
            "(delta.columnMapping.mode): its files' columns can only be read through "
            "Delta. Use auto or spark."
        )
    if config.gold.image_reader == "spark" or not storage_of(config.lakehouse).direct or mapped:
        return "spark"
    return "workers"


def _split_bytes(spark: SparkSession, config: Config, work_bytes: int) -> int:
    """Read-split size of the featurizing pass: about 4 tasks per core for this run's
    ``work_bytes`` of silver, never below gold.partition_bytes (at least silver's
    row-group size, silver.row_group_bytes, so a small increment still spreads over
    every core) nor above 128
    MB (a large run makes few big tasks: each task costs a Python round trip; measured
    on 2,020 images, 8 MB splits 140 img/s, 64 MB 155)."""
    tasks = 4 * spark.sparkContext.defaultParallelism
    return int(min(128 << 20, max(config.gold.partition_bytes, work_bytes // tasks)))


LAYER = Layer("gold", body=lambda config, options: functools.partial(
    featurize_new, rebuild=False))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Featurize new silver images with MobileNetV2 into gold.")
    parser.add_argument("--weights", help="imagenet (default), random, or a .h5 file path")
    parser.add_argument("--engine", help="tflite (default), onnx, or tensorflow (the reference)")
    parser.add_argument("--export", help="Parquet export folder (default under the lakehouse)")
    parser.add_argument(
        "--rebuild", action="store_true", help="recompute rows made with other weights"
    )
    parsed = parse_or_exit(
        parser,
        argv,
        lambda a: config_from_args(a, weights=a.weights, engine=a.engine, export=a.export),
    )
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    body = functools.partial(featurize_new, rebuild=args.rebuild)
    return run_job("gold", config, body, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
