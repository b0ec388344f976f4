"""What a table is (:class:`TableSpec`), and where each layer's tables are found.

Each layer package defines its own tables in its ``tables`` module (``bronze/tables.py``,
``silver/tables.py``, ``gold/tables.py``: ``TABLES = (...)``); :func:`all_tables` finds
them through the layers registered in :data:`common.layers.PIPELINE`, so ``common``
never imports a layer. This module keeps the run log's table (``ops.runs``, every job's)
and the sizes every layer shares.

Every table is a Delta table under ``<lakehouse>/<database>/<table>``; sessions register
them by name (``bronze.images``) at start-up, so a new process sees them (see
:func:`common.lake.register_tables`); jobs read and write them through
:class:`common.lake.Table`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pyspark.sql import types as T

from common.config import join_path

IMAGE_SIZE = 224
IMAGE_CHANNELS = 3
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * IMAGE_CHANNELS
FEATURE_SIZE = 1280

@dataclass(frozen=True)
class TableSpec:
    database: str
    table: str
    schema: T.StructType
    # Delta CHECK constraints: name -> SQL expression over the table's own columns.
    constraints: tuple[tuple[str, str], ...] = ()
    # Parquet column paths of its per-row payload (an image file's bytes, a pixel array,
    # 1280 feature floats): no query filters on them and their values are large and
    # seldom repeated, so the session writes them without statistics or dictionary
    # (see common.spark.spark_settings).
    payload: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def location(self, lakehouse: str) -> str:
        return join_path(lakehouse, self.database, self.table)


def field(name: str, dtype: T.DataType, nullable: bool = True) -> T.StructField:
    return T.StructField(name, dtype, nullable)


OPS_RUNS = TableSpec(
    "ops",
    "runs",
    T.StructType(
        [
            field("job", T.StringType(), False),
            field("run_id", T.StringType(), False),
            field("status", T.StringType(), False),
            field("started_at", T.TimestampType(), False),
            field("ended_at", T.TimestampType(), False),
            field("seconds", T.DoubleType(), False),
            field("rows_in", T.LongType()),
            field("rows_out", T.LongType()),
            field("rows_rejected", T.LongType()),
            field("rows_deleted", T.LongType()),
            field("rows_per_second", T.DoubleType()),
            field("model_seconds", T.DoubleType()),
            field("app_id", T.StringType()),
            field("details", T.StringType()),
            field("error", T.StringType()),
        ]
    ),
)


def all_tables() -> tuple[TableSpec, ...]:
    """Every table of the product: each registered layer package's ``TABLES`` (in
    pipeline order), then ``ops.runs``."""
    from common.layers import layer_packages

    tables: list[TableSpec] = []
    for package in layer_packages():
        try:
            module = importlib.import_module(f"{package}.tables")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.tables":
                raise
            continue  # a layer without tables of its own
        tables.extend(spec for spec in module.TABLES if spec not in tables)
    return (*tables, OPS_RUNS)


def payload_columns() -> tuple[str, ...]:
    """The Parquet column paths of every table's payload (:attr:`TableSpec.payload`)."""
    return tuple(dict.fromkeys(c for spec in all_tables() for c in spec.payload))
