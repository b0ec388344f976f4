"""Gold's rows written by the Python workers that computed them (``gold.writer``).

Through Spark, each row's 1,280 features go back from the Python worker to the driver's
JVM through Arrow, are copied into a row, and Spark's Parquet writer writes them one
value at a time (with Delta's checks and statistics): 7-8 s of the JVM's CPU in a
20,000-image run, taken from the two cores that run the model (README, Performance).
With ``gold.writer: workers`` each featurizing task writes its rows to one Parquet file
of the table with pyarrow (the features straight from the model's float32 array) and
returns only the file's name, size and row count; the driver then adds every file to
the table in one Delta commit, with the run's marker (:func:`commit_files`).

Exactly once as with Spark's writer: a file is part of the table only once the commit
names it. A killed run, or a failed task attempt, leaves files that no commit names;
readers never see them (``VACUUM`` removes them); the next run featurizes those rows
again. The commit is one transaction started before the files are written, so a change
of gold's metadata meanwhile fails it (Delta's conflict check).

What Delta's writer checks, the workers check: each row has exactly 1,280 features and
no column is null (the table's constraint and its NOT NULL columns). Only a table that
is the product's own gets files this way (:func:`open_commit`): same schema and
constraints, no partitions, no column mapping; otherwise ``auto`` lets Spark write.
Files carry ``numRecords`` as their Delta statistics (no min/max: Delta then never skips
them on a filter, which is always right).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.delta_log import Transaction, delta_version, open_transaction
from common.tables import FEATURE_SIZE
from gold.silver_files import local_file
from gold.tables import GOLD_FEATURES
from gold.udf import WorkerModel, predicted, read_pixels

_ELEMENT = pa.field("element", pa.float32(), nullable=False)
_TYPES = {T.StringType(): pa.string(), T.TimestampType(): pa.timestamp("us", tz="UTC"),
          T.ArrayType(T.FloatType(), False): pa.list_(_ELEMENT)}
# gold.image_features as pyarrow writes it: the columns Delta's schema names, required.
ARROW_SCHEMA = pa.schema([pa.field(f.name, _TYPES[f.dataType], nullable=f.nullable)
                          for f in GOLD_FEATURES.schema.fields])
KEY_COLUMNS = ("path", "label", "content_hash")
# What each featurizing task returns to the driver: the file it wrote.
RESULT_SCHEMA = T.StructType([
    T.StructField("file", T.StringType(), False),
    T.StructField("size", T.LongType(), False),
    T.StructField("modification_time", T.LongType(), False),
    T.StructField("rows", T.LongType(), False),
])
_RESULT_ARROW = pa.schema([("file", pa.string()), ("size", pa.int64()),
                           ("modification_time", pa.int64()), ("rows", pa.int64())])
# Columns worth a dictionary (few distinct values) and statistics (not the features).
_DICTIONARY = ["label", "model", "run_id"]
_STATISTICS = [name for name in ARROW_SCHEMA.names if name != "features"]


def gold_table(keys: pa.Table, vectors: np.ndarray, model: str, run_id: str,
               now: datetime) -> pa.Table:
    """gold.image_features rows: ``keys`` (path, label, content_hash) and their features
    ``vectors`` (float32, n x 1280), made by ``model`` in run ``run_id`` at ``now``."""
    rows = keys.num_rows
    if vectors.shape != (rows, FEATURE_SIZE):
        raise ValueError(f"gold rows need {FEATURE_SIZE} features each: got an array of "
                         f"shape {vectors.shape} for {rows} rows")
    for name in KEY_COLUMNS:
        if keys.column(name).null_count:
            raise ValueError(f"gold rows need a {name} in every row: "
                             f"{keys.column(name).null_count} null")
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (rows + 1) * FEATURE_SIZE, FEATURE_SIZE, dtype=np.int32))
    columns = {
        **{name: keys.column(name).cast(pa.string()) for name in KEY_COLUMNS},
        "features": pa.ListArray.from_arrays(offsets, values, type=pa.list_(_ELEMENT)),
        "model": pa.array([model] * rows, pa.string()),
        "run_id": pa.array([run_id] * rows, pa.string()),
        "processed_at": pa.array([now] * rows, pa.timestamp("us", tz="UTC")),
    }
    return pa.Table.from_arrays([columns[name] for name in ARROW_SCHEMA.names],
                                schema=ARROW_SCHEMA)


def features_files(
    model: WorkerModel, *, table: str, run_id: str, now: datetime,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function: featurizes a task's rows (``file``, the silver file of
    each row, and :data:`KEY_COLUMNS`; the worker reads each image from that file),
    writes them as one Parquet file in the folder of the table at ``table``, and returns
    that file as one :data:`RESULT_SCHEMA` row (none for an empty task)."""
    folder = local_file(table)

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        keys, vectors = [], []
        for batch, features in predicted(model, batches, _pixels):
            if batch.num_rows:
                vectors.append(features)
                keys.append(batch.select(list(KEY_COLUMNS)))
        if not keys:
            return
        rows = gold_table(pa.Table.from_batches(keys), np.concatenate(vectors),
                          model.identity, run_id, now)
        task = TaskContext.get()
        name = f"part-{task.partitionId() if task else 0:05d}-{uuid.uuid4()}-c000.zstd.parquet"
        path = os.path.join(folder, name)
        # zstd level 3, as Spark writes the other tables (pyarrow's default is 1)
        pq.write_table(rows, path, compression="zstd", compression_level=3,
                       use_dictionary=_DICTIONARY, write_statistics=_STATISTICS)
        written = os.stat(path)
        yield pa.RecordBatch.from_pydict(
            {"file": [name], "size": [written.st_size],
             "modification_time": [written.st_mtime_ns // 1_000_000], "rows": [rows.num_rows]},
            schema=_RESULT_ARROW)

    return write


def _pixels(batch: pa.RecordBatch) -> np.ndarray:
    return read_pixels(*(batch.column(c).to_pylist() for c in ("file", "path", "content_hash")))


def write_files(keys: DataFrame, write: Callable) -> list[Row]:
    """Run ``write`` (:func:`features_files`) over ``keys``: the files written, one per
    non-empty task."""
    columns = [F.col("_metadata.file_path").alias("file"), *KEY_COLUMNS]
    return keys.select(*columns).mapInArrow(write, RESULT_SCHEMA).collect()


def open_commit(spark: SparkSession, location: str) -> tuple[Transaction | None, str]:
    """A transaction (:func:`common.delta_log.open_transaction`) on gold's table at
    ``location`` when the workers may write its files, else None; and why not."""
    transaction = open_transaction(spark, location)
    if transaction is None:
        return None, (f"Delta {delta_version(spark)} is not a release the workers' commit "
                      "was tested with")
    constraints = {k: "".join(v.lower().split()) for k, v in transaction.configuration.items()
                   if k.startswith("delta.constraints.")}
    ours = {f"delta.constraints.{name}": "".join(expression.lower().split())
            for name, expression in GOLD_FEATURES.constraints}
    if transaction.schema != GOLD_FEATURES.schema:
        return None, "its schema is not gold.image_features' own"
    if transaction.partitioned:
        return None, "it is partitioned"
    if transaction.configuration.get("delta.columnMapping.mode", "none") != "none":
        return None, "it uses column mapping"
    if constraints != ours:
        return None, "its constraints are not gold.image_features' own"
    return transaction, ""
