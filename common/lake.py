"""The table seam: every job reads, appends, merges, updates and deletes the rows of a
table, and asks what was appended since version N, through :class:`Table`.

A job gets its tables by their spec (:func:`table`, or :func:`ensure_table`, which also
creates a missing one and refuses a foreign or corrupt one) and never builds a path or
opens a ``DeltaTable`` itself. Every route here is Delta's public API (``DeltaTable``,
``spark.read.format("delta")``) except where :mod:`common.delta_log`, the one module that
knows Delta's log and private classes, answers the same question in milliseconds
instead of a Spark query (the latest version, a table's properties and files, the files
appended since a version; ``make delta-bench`` measures both routes). With a Delta
release that module was not tested with, it answers None and the public route is taken.

Where a table is named: with Spark's in-memory catalog (the default) every session
registers the tables it finds by name (:func:`register_tables`: ``bronze.images`` -> its
path) for SQL, and jobs address tables by path, since one process may serve several
lakehouses. With a persistent catalog configured (``spark.sql.catalogImplementation``
``hive``: a Hive metastore, or AWS Glue through its Hive client on EMR, given in
``spark.extra``), the names outlive the session: each table is registered there once,
as an external table at its lakehouse path, and jobs read, write, merge and delete it
by name (:attr:`Table.by_name`). A name the catalog already gives to a table elsewhere
stops the job before it writes anything (:class:`LakehouseError`). The log routes read
the same table's log at its path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession

from common.config import ConfigError
from common.delta_log import (
    LOG_FOLDER,
    TableState,
    appended_files,
    data_files,
    is_delta_table,
    latest_version,
    read_commit,
    remove_unversioned_log,
    table_state,
)
from common.storage import join_path, storage_of
from common.tables import TableSpec, all_tables

log = logging.getLogger("lake")


class LakehouseError(RuntimeError):
    """The lakehouse holds something this product must not touch (foreign or corrupt)."""


@dataclass(frozen=True)
class Table:
    """One Delta table: where it is and, for the product's tables, what it is; addressed
    by its name in a persistent catalog when ``by_name`` (see the module's docstring)."""

    spark: SparkSession
    location: str
    spec: TableSpec | None = None
    by_name: bool = False

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else self.location

    def _delta(self):  # noqa: ANN202 - delta.tables.DeltaTable, imported late
        from delta.tables import DeltaTable

        if self.by_name:
            return DeltaTable.forName(self.spark, self.name)
        return DeltaTable.forPath(self.spark, self.location)

    # --- What it is ----------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether a Delta table with at least one version is there."""
        return is_delta_table(self.spark, self.location)

    def version(self) -> int | None:
        """Its latest version (None when there is no table)."""
        return latest_version(self.spark, self.location)

    def state(self, version: int | None = None) -> TableState | None:
        """Its id, schema, properties and size as of ``version`` (the latest by default),
        from the log's checksum file; None when that file cannot be read."""
        return table_state(self.spark, self.location, version)

    def files(self) -> tuple[TableState, list[str]] | None:
        """Its latest version's state and data files, from the log's checksum file (None
        when that file cannot show them: read the table through Spark then)."""
        return data_files(self.spark, self.location)

    def commit(self, version: int) -> list[dict] | None:
        """The actions of commit ``version`` (None when it cannot be read)."""
        return read_commit(self.spark, self.location, version)

    def detail(self) -> Any:
        """``DESCRIBE DETAIL``'s row (location, size in bytes, files, properties...)."""
        return self._delta().detail().first()

    def properties(self) -> dict[str, str]:
        """Its table properties (the checksum file; ``detail()`` when it is missing)."""
        state = self.state()  # milliseconds
        if state is not None:
            return dict(state.configuration)
        return dict(self.detail()["properties"] or {})  # ~0.5 s

    # --- Reading -------------------------------------------------------------------------

    def read(self, version: int | None = None) -> DataFrame:
        """Its rows, as of ``version`` when given."""
        if self.by_name:  # the name is one of the product's constants (TableSpec.name)
            as_of = f" VERSION AS OF {int(version)}" if version is not None else ""
            return self.spark.sql(f"SELECT * FROM {self.name}{as_of}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.location)

    def pinned(self) -> tuple[DataFrame, int]:
        """Its rows as of its latest version, and that version (a run reads one version
        however many commits land meanwhile)."""
        version = self.version()
        if version is None:
            raise FileNotFoundError(f"no Delta table at {self.location}")
        return self.read(version), version

    def appended_since(self, since: int, until: int) -> list[dict] | None:
        """The data files that versions ``since`` + 1 .. ``until`` added, when every one
        of those commits is a plain append (the ``add`` actions of the log); None when
        that cannot be shown, and the caller compares keys instead."""
        return appended_files(self.spark, self.location, since, until)

    def read_files(self, added: Sequence[dict], state: TableState) -> DataFrame:
        """The rows of data files ``added`` (from :meth:`appended_since`): a plain
        Parquet read with the table's schema (appended files carry no deletion vector)."""
        if not added:
            return self.spark.createDataFrame([], state.schema)
        files = [join_path(self.location, unquote(a["path"])) for a in added]
        return self.spark.read.schema(state.schema).parquet(*files)

    # --- Writing -------------------------------------------------------------------------

    def append(self, rows: DataFrame, metadata: str | None = None) -> None:
        """Append ``rows`` in one commit; ``metadata`` is the commit's ``userMetadata``
        (its history shows it)."""
        writer = rows.write.format("delta").mode("append")
        if metadata:
            writer = writer.option("userMetadata", metadata)
        if self.by_name:
            writer.saveAsTable(self.name)
        else:
            writer.save(self.location)

    def merge(self, source: DataFrame, condition: Column | str) -> Any:
        """A ``MERGE`` of ``source`` (alias ``s``) into this table (alias ``t``): Delta's
        merge builder, to finish with its ``whenMatched...``/``execute``."""
        return self._delta().alias("t").merge(source.alias("s"), condition)

    def update(self, values: Mapping[str, Column], where: Column | str | None = None) -> None:
        """Set ``values`` (column -> expression) in the rows matching ``where`` (all
        rows by default)."""
        self._delta().update(where, dict(values))

    def delete(self, condition: Column | str, *, count: bool = True) -> int | None:
        """Delete the rows matching ``condition``. With ``count`` (the default) they are
        counted first, nothing is committed when none match, and the count is returned;
        without it, one DELETE and None."""
        if not count:
            self._delta().delete(condition)
            return None
        matching = self.read().where(condition).count()
        if matching:
            self._delta().delete(condition)
        return matching


def named_catalog(spark: SparkSession) -> bool:
    """Whether the session's catalog is a persistent one (a Hive metastore or Glue),
    whose names the product's tables are addressed by."""
    return spark.sparkContext.getConf().get(
        "spark.sql.catalogImplementation", "in-memory") == "hive"


def table(spark: SparkSession, spec: TableSpec, lakehouse: str) -> Table:
    """``spec``'s table under ``lakehouse`` (it may not exist yet: :meth:`Table.exists`).

    With a persistent catalog, an existing table is registered there (once) and
    addressed by name; a table not made yet is addressed by name once
    :func:`ensure_table` has made it."""
    found = Table(spark, spec.location(lakehouse), spec)
    if named_catalog(spark) and found.exists():
        register_table(spark, spec, found.location)
        return dataclasses.replace(found, by_name=True)
    return found


def upstream(spark: SparkSession, spec: TableSpec, lakehouse: str, remedy: str) -> Table:
    """``spec``'s table under ``lakehouse``, which a job reads from: a
    :class:`~common.config.ConfigError` that says ``remedy`` (which job to run first)
    when it is not there, before the job touches any table."""
    found = table(spark, spec, lakehouse)
    if not found.exists():
        raise ConfigError(f"no {spec.name} under {lakehouse}: {remedy}")
    return found


def register_tables(spark: SparkSession, lakehouse: str) -> list[str]:
    """Register every product table that exists under ``lakehouse``; return their names."""
    registered = []
    for spec in all_tables():
        location = spec.location(lakehouse)
        if is_delta_table(spark, location):
            register_table(spark, spec, location)
            registered.append(spec.name)
    return registered


def register_table(spark: SparkSession, spec: TableSpec, location: str) -> None:
    """Name the table at ``location`` ``spec.name`` in the session's catalog. A
    persistent catalog is asked once per process and table; a name it gives to a table
    elsewhere raises :class:`LakehouseError`."""
    named = named_catalog(spark)
    if named and (spec.name, location) in _REGISTERED:
        return
    # Database names come from our own constants, never from user input.
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {spec.database}")
    if not spark.catalog.tableExists(spec.name):
        spark.catalog.createTable(spec.name, path=location, source="delta")
    elif named:
        _check_same_location(spark, spec, location)
    if named:
        _REGISTERED.add((spec.name, location))


# (name, location) of the tables this process found or registered in a persistent catalog.
_REGISTERED: set[tuple[str, str]] = set()


def _check_same_location(spark: SparkSession, spec: TableSpec, location: str) -> None:
    """Refuse a catalog whose ``spec.name`` (which exists) is a table elsewhere (another
    lakehouse's)."""
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {spec.name}").collect()
    found = next((r.data_type for r in rows if r.col_name == "Location"), None)
    if found is not None and _place(found) != _place(location):
        raise LakehouseError(
            f"the catalog's {spec.name} is the table at {_place(found)}, not this lakehouse's "
            f"{location}; stopped before writing anything. Use the lakehouse the catalog "
            f"names, another metastore, or DROP TABLE {spec.name} in the catalog (an "
            "external table: its files stay).")


def _place(location: str) -> str:
    """A location without its ``file:`` scheme and trailing slash, for comparison."""
    text = location.rstrip("/")
    if text.startswith("file:"):
        text = "/" + text.removeprefix("file:").lstrip("/")
    return text


def ensure_table(spark: SparkSession, spec: TableSpec, lakehouse: str) -> Table:
    """Create ``spec``'s Delta table if absent; refuse a foreign or corrupt one.

    Returns the table. A folder that holds files but no Delta log, or a
    Delta table whose columns are not ours, raises :class:`LakehouseError`: the product
    never overwrites what it did not write.
    """
    location = spec.location(lakehouse)
    named = named_catalog(spark)
    if (named and (spec.name, location) not in _REGISTERED  # before anything is written
            and spark.catalog.tableExists(spec.name)):
        _check_same_location(spark, spec, location)
    if not is_delta_table(spark, location):
        with _creation_lock(lakehouse):
            if not is_delta_table(spark, location):  # not made while we waited
                _create_table(spark, spec, location)
                return Table(spark, location, spec, by_name=named)
    try:
        existing = Table(spark, location, spec).read().schema
    except Exception as exc:  # noqa: BLE001 - any read failure means corrupt
        raise LakehouseError(
            f"{location} has a Delta log that cannot be read ({_first_line(exc)}); "
            f"refusing to touch {spec.name}. Move it aside or repair it."
        ) from exc
    want = [(f.name, f.dataType.simpleString()) for f in spec.schema.fields]
    have = [(f.name, f.dataType.simpleString()) for f in existing.fields]
    if want != have:
        raise LakehouseError(
            f"{location} holds a Delta table that is not {spec.name} "
            f"(columns {[n for n, _ in have]}, expected {[n for n, _ in want]}); "
            "refusing to overwrite it. Point --lakehouse elsewhere or move it aside."
        )
    _check_properties(spark, spec, location)
    if named:
        register_table(spark, spec, location)
    return Table(spark, location, spec, by_name=named)


def _check_properties(spark: SparkSession, spec: TableSpec, location: str) -> None:
    """Refuse table properties the product cannot write under.

    Deletion vectors and the change data feed are fine (DELETE/MERGE/UPDATE rewrite files,
    see :func:`spark_settings`). Column mapping is not: gold commits Parquet files its
    workers wrote with the logical column names.
    """
    properties = Table(spark, location, spec).properties()
    mode = properties.get("delta.columnMapping.mode", "none")
    if mode != "none":
        raise LakehouseError(
            f"{spec.name} ({location}) has delta.columnMapping.mode={mode}; this product "
            "writes its tables without column mapping and stopped before changing anything. "
            f"Run ALTER TABLE delta.`{location}` UNSET TBLPROPERTIES "
            "('delta.columnMapping.mode') (Delta rewrites the table without it), or move "
            "the table aside and let the job rebuild it."
        )


@contextlib.contextmanager
def _creation_lock(lakehouse: str) -> Iterator[None]:
    """Hold ``<lakehouse>/_locks/tables.lock`` while a table is created (local
    lakehouses; ``flock`` is released when the process dies, even by SIGKILL). So a Delta
    log without a version seen under it is never one another process is still writing."""
    with storage_of(lakehouse).lock(join_path(lakehouse, "_locks"), "tables"):
        yield


def _create_table(spark: SparkSession, spec: TableSpec, location: str) -> None:
    from delta.tables import DeltaTable

    if _has_files(spark, location, besides=LOG_FOLDER):
        raise LakehouseError(
            f"{location} holds files but no Delta log: it is not a {spec.name} table "
            "of this lakehouse; refusing to overwrite it."
        )
    if remove_unversioned_log(spark, location):
        log.warning("removed the Delta log of %s at %s: the trace of a creation "
                    "interrupted before its first version", spec.name, location)
    try:
        DeltaTable.createIfNotExists(spark).location(location).addColumns(
            spec.schema
        ).execute()
        register_table(spark, spec, location)
        for name, expression in spec.constraints:
            # Constraint names and expressions are constants of the layers' tables modules.
            spark.sql(f"ALTER TABLE {spec.name} ADD CONSTRAINT {name} CHECK ({expression})")
        log.info("created table %s at %s", spec.name, location)
    except Exception:
        # Another process created it at the same moment (an object store has no
        # creation lock): theirs is as good as ours once its constraints are in place.
        if not _has_constraints(spark, spec, location):
            raise


def _has_constraints(spark: SparkSession, spec: TableSpec, location: str) -> bool:
    if not is_delta_table(spark, location):
        return False
    properties = Table(spark, location, spec).properties()
    return all(f"delta.constraints.{name}" in properties for name, _ in spec.constraints)


def _has_files(spark: SparkSession, path: str, besides: str = "") -> bool:
    """Whether the folder ``path`` holds anything but an entry named ``besides``."""
    return any(name != besides for name in storage_of(path).list_names(spark, path) or ())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
