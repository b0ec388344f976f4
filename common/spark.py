"""The one SparkSession builder and the Delta jars.

Catalog choice: every session uses Spark's in-memory catalog and registers the Delta
tables that exist under the lakehouse as external tables (``bronze.images`` ->
``<lakehouse>/bronze/images``, :func:`common.lake.register_tables`). The Delta log is the only source of truth, so any number
of processes (a job, a ``make sql`` query, a notebook) can use the lakehouse at once;
Spark's embedded Derby metastore would admit one process at a time.

Run ``python -m common.spark --fetch-jars`` once (``make setup`` does) to resolve the
Delta jars from Maven Central through Spark's own resolver into ``.ivy/``; after that no
job or test needs the network. ``python -m common.spark --submit-args --env local`` prints
the spark-submit options of a profile (the Makefile uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from common.config import (
    Config,
    ConfigError,
    load_config,
    memory_bytes,
    parse_override,
)
from common.jvm import IVY_DIR, PROJECT_ROOT, archive_option, delta_jars
from common.lake import register_tables
from common.storage import local_path, storage_of
from common.tables import payload_columns

log = logging.getLogger(__name__)

DELTA_PACKAGE = "io.delta:delta-spark_2.13:4.0.1"
LOG4J_CONF = PROJECT_ROOT / "conf" / "log4j2.properties"


def spark_settings(config: Config, *, use_archive: bool = True) -> dict[str, str]:
    """Spark settings of a profile, shared by spark-submit and the in-process builder.

    With a local master, the driver JVM maps this machine's class-data archive when
    ``make setup`` has built it (see :mod:`common.jvm`).
    """
    local = config.spark.master.startswith("local")
    archive = archive_option() if use_archive and local else None
    settings = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.shuffle.partitions": str(config.spark.shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": str(config.spark.snapshot_partitions),
        "spark.sql.session.timeZone": "UTC",
        # DELETE, MERGE and UPDATE rewrite files instead of writing deletion vectors, so
        # they work on tables where a user enabled them: Delta 4.0's deletion-vector path
        # fails on tables with a `path` column (AMBIGUOUS_REFERENCE filePath).
        "spark.databricks.delta.delete.deletionVectors.persistent": "false",
        "spark.databricks.delta.merge.deletionVectors.persistent": "false",
        "spark.databricks.delta.update.deletionVectors.persistent": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Parquet files of every table: zstd is ~25% smaller than snappy on image bytes.
        "spark.sql.parquet.compression.codec": "zstd",
        # Keep Python workers alive across tasks so the model is built once per worker.
        "spark.python.worker.reuse": "true",
        # pyspark's daemon, minus a 0.2 s re-read of zip archives before every task.
        "spark.python.daemon.module": "common.pydaemon",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.debug.maxToStringFields": "500",
        # Key sets of incremental runs (path + hash, ~150 bytes a row) up to ~400k rows are
        # broadcast, so the image rows they filter are never shuffled.
        "spark.sql.autoBroadcastJoinThreshold": str(64 * 1024 * 1024),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": config.event_log_dir,
        "spark.executor.memory": config.spark.executor_memory,
        "spark.driver.extraJavaOptions": " ".join(
            [f"-Dlog4j2.configurationFile={LOG4J_CONF}", *config.spark.driver_java_options.split(),
             *([archive] if archive else []), _on_out_of_memory(config)]
        ),
    }
    # Parquet keeps min/max statistics of every column chunk and tries a dictionary for
    # each before falling back to plain encoding. For the payload columns both are pure
    # cost: comparing 150 KB pixel arrays whose first rows are the same white background
    # (Fruits-360) was most of the executors' Java time while silver wrote its table (Java
    # Flight Recorder, cold silver on 20,391 images: 217 of 310 samples in
    # Binary.lexicographicCompare/equals/hashCode and the dictionary writer), and hashing
    # 1280 distinct floats per row was the driver JVM's main work while gold's model ran
    # (5,100 images). Parquet readers do not need either to read the column.
    for column in payload_columns():
        settings[f"spark.hadoop.parquet.enable.dictionary#{column}"] = "false"
        settings[f"spark.hadoop.parquet.column.statistics.enabled#{column}"] = "false"
    if local:
        # The executor is the driver's JVM: by default an OutOfMemoryError in a task kills
        # it, and the run could neither record its failure nor say why. With 0 the task
        # fails, its memory is freed and the job reports the error (jobs.explain_failure).
        settings["spark.executor.killOnFatalError.depth"] = "0"
    settings.update(config.spark.extra)
    return settings


def _on_out_of_memory(config: Config) -> str:
    """A JVM option that prints what to change when the driver's JVM runs out of heap,
    whichever thread it hits (even one whose error ends the JVM before Python can speak)."""
    message = (
        f"error: the Spark driver JVM ran out of memory (Java heap, spark.driver_memory="
        f"{config.spark.driver_memory}). Raise spark.driver_memory in conf/{config.env}.yaml "
        f"or with --set spark.driver_memory=... (make: JOB_ARGS=...), or lower what one task "
        f"holds: silver/gold.arrow_batch_size, bronze.max_file_bytes."
    )
    assert not set(message) & set("'\"%;"), message  # quoted once for the JVM, once for sh
    return f"-XX:OnOutOfMemoryError=\"echo '{message}' >&2\""


def submit_args(config: Config, *, use_archive: bool = True) -> list[str]:
    """spark-submit options for a profile (master, memory, Delta jars, settings)."""
    args = ["--master", config.spark.master, "--driver-memory", config.spark.driver_memory]
    jars = delta_jars()
    if jars:
        args += ["--jars", ",".join(jars)]
    for key, value in spark_settings(config, use_archive=use_archive).items():
        args += ["--conf", f"{key}={value}"]
    return args


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands the Python driver its gateway.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _make_remote_dir(uri: str, settings: dict[str, str]) -> None:
    """Create ``uri`` (e.g. the event-log folder on S3) before the SparkContext starts:
    Spark refuses to start when its event-log folder does not exist, and an object
    store has no folder until something creates its marker."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()  # spark-submit's JVM, no context yet
    jvm = SparkContext._jvm
    hadoop_conf = jvm.org.apache.hadoop.conf.Configuration()
    for key, value in settings.items():
        if key.startswith("spark.hadoop."):
            hadoop_conf.set(key[len("spark.hadoop."):], value)
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(hadoop_conf).mkdirs(path)


def _warn_if_driver_memory_differs(spark: SparkSession, config: Config) -> None:
    # The JVM's heap is fixed before Python runs: a --set given to the job alone is late.
    running = spark.sparkContext.getConf().get("spark.driver.memory", "1g")
    if memory_bytes(running) != memory_bytes(config.spark.driver_memory):
        log.warning(
            "spark.driver_memory is %s in this run's settings but the JVM started with %s: "
            "give the --set to `python -m common.spark --submit-args` too (make does it "
            "with JOB_ARGS)", config.spark.driver_memory, running,
        )


def build_session(config: Config, app_name: str, *, register: bool = True) -> SparkSession:
    """Create (or return the running) Delta-enabled session for ``config``.

    Under spark-submit the master, memory and jars come from its command line (see
    :func:`submit_args`); in-process (tests, notebooks) they come from the profile.
    With ``register`` (the default) the tables that exist under the lakehouse are
    registered by name; jobs skip it and register the tables they write.
    """
    if storage_of(config.event_log_dir).direct:
        local_path(config.event_log_dir).mkdir(parents=True, exist_ok=True)
    elif _under_spark_submit():
        _make_remote_dir(config.event_log_dir, spark_settings(config))
    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_settings(config).items():
        builder = builder.config(key, value)
    if not _under_spark_submit():
        builder = builder.master(config.spark.master).config(
            "spark.driver.memory", config.spark.driver_memory
        )
        jars = delta_jars()
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
        else:
            builder = builder.config("spark.jars.packages", DELTA_PACKAGE).config(
                "spark.jars.ivy", str(IVY_DIR)
            )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if _under_spark_submit():
        _warn_if_driver_memory_differs(spark, config)
    if register:
        register_tables(spark, config.lakehouse)
    return spark


@contextlib.contextmanager
def session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Set a runtime SQL setting for the actions inside the block, then restore it."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def set_hadoop_setting(spark: SparkSession, key: str, value: int) -> None:
    """Set ``key`` in the session's Hadoop configuration (what the file writers read,
    such as ``parquet.block.size``) for the rest of the session."""
    spark.sparkContext._jsc.hadoopConfiguration().setInt(key, value)


def local_frame(
    spark: SparkSession, rows: Sequence[Sequence[Any]], schema: StructType
) -> DataFrame:
    """A DataFrame of rows held by the driver (a run log row, a list of paths), sent to
    the JVM as Arrow.

    ``spark.createDataFrame`` of a Python list pickles the rows into a Python RDD, so the
    first query over them starts Spark's Python daemon and a worker per task just to
    unpickle them: in a job that runs no Python UDF (bronze, and every job with nothing
    to do) that start cost ~1.1 s of a one-row append to ``ops.runs`` (1.8 against 0.7
    s, measured in fresh spark-submits). An Arrow table is read by the JVM itself.
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    columns = list(zip(*rows)) if rows else [()] * len(schema.fields)
    table = pa.Table.from_arrays(
        [pa.array(list(values), type=field.type) for values, field in zip(columns, arrow_schema)],
        schema=arrow_schema,
    )
    return spark.createDataFrame(table, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch-jars", action="store_true", help="resolve the Delta jars once")
    parser.add_argument("--submit-args", action="store_true", help="print spark-submit options")
    parser.add_argument("--env", default="local")
    parser.add_argument("--lakehouse", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="the job's own overrides (spark.driver_memory=8g is applied "
                             "when the JVM starts, so it must be given here too)")
    # A job's other options (--rebuild, --source, ...) may ride along; they are not ours.
    args, _ = parser.parse_known_args(argv)
    from common.config import with_cli_values

    try:
        config = load_config(args.env, dict(parse_override(s) for s in args.set))
        if args.lakehouse:
            config = with_cli_values(config, lakehouse=args.lakehouse)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.fetch_jars:
        if delta_jars():
            return 0
        spark = (
            SparkSession.builder.master("local[1]")
            .config("spark.jars.packages", DELTA_PACKAGE)
            .config("spark.jars.ivy", str(IVY_DIR))
            .getOrCreate()
        )
        spark.stop()
        if not delta_jars():
            print(f"could not fetch {DELTA_PACKAGE} into {IVY_DIR}", file=sys.stderr)
            return 1
        print(f"fetched Delta jars into {IVY_DIR / 'jars'}")
    if args.submit_args:
        # One option per line: `mapfile -t ARGS < <(...)` keeps values with spaces whole.
        print("\n".join(submit_args(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())


