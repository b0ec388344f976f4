"""common/lake.py: the one way a job reads and writes a table, checked against what Delta
itself says of the table (its history, DESCRIBE DETAIL, the files Spark reads)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import ConfigError
from common.lake import LakehouseError, Table, ensure_table, table, upstream
from common.tables import TableSpec, field

NOTES = TableSpec("lab", "notes", T.StructType([
    field("path", T.StringType(), False), field("content_hash", T.StringType()),
    field("size", T.LongType())]))


def _rows(frame) -> list[tuple]:  # noqa: ANN001 - a DataFrame
    return sorted(tuple(r) for r in frame.collect())


def _history(spark, location: str) -> list[tuple]:  # noqa: ANN001
    return [(r.version, r.operation, r.userMetadata) for r in
            DeltaTable.forPath(spark, location).history().orderBy("version").collect()]


def test_a_table_is_read_and_written_by_its_spec(spark, tmp_path: Path) -> None:
    lakehouse = str(tmp_path / "lh")
    notes = table(spark, NOTES, lakehouse)
    assert (notes.name, notes.location) == ("lab.notes", f"{lakehouse}/lab/notes")
    assert not notes.exists() and notes.version() is None
    with pytest.raises(ConfigError, match=r"^no lab.notes under .*: run the lab job first$"):
        upstream(spark, NOTES, lakehouse, "run the lab job first")

    created = ensure_table(spark, NOTES, lakehouse)
    assert created == notes and notes.exists() and notes.version() == 0
    assert spark.catalog.tableExists("lab.notes")  # registered by name for SQL
    assert upstream(spark, NOTES, lakehouse, "unused") == notes

    notes.append(spark.createDataFrame([("a", "1", 10), ("b", None, 20)], NOTES.schema), "run-1")
    notes.append(spark.createDataFrame([("c", "3", 30)], NOTES.schema))
    assert _rows(notes.read()) == [("a", "1", 10), ("b", None, 20), ("c", "3", 30)]
    assert _rows(notes.read(1)) == [("a", "1", 10), ("b", None, 20)]  # as of version 1
    frame, version = notes.pinned()
    notes.append(spark.createDataFrame([("d", "4", 40)], NOTES.schema))
    assert version == 2 and len(frame.collect()) == 3  # pinned: later commits unseen

    # a merge with its aliases t and s: one row changed, one inserted
    (notes.merge(spark.createDataFrame([("a", "1", 11), ("e", "5", 50)], NOTES.schema),
                 F.col("t.path") == F.col("s.path"))
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    notes.update({"size": F.col("size") * 2}, F.col("path") == "b")
    assert notes.delete(F.col("path") == "zzz") == 0  # none match: nothing committed
    assert notes.delete(F.col("path").isin("d", "e")) == 2
    assert notes.delete(F.col("path") == "c", count=False) is None
    assert _rows(notes.read()) == [("a", "1", 11), ("b", None, 40)]
    assert _history(spark, notes.location) == [
        (0, "CREATE TABLE", None), (1, "WRITE", "run-1"), (2, "WRITE", None),
        (3, "WRITE", None), (4, "MERGE", None), (5, "UPDATE", None), (6, "DELETE", None),
        (7, "DELETE", None)]
    assert notes.version() == 7


def test_what_the_log_answers_is_what_delta_answers(spark, tmp_path: Path) -> None:
    notes = ensure_table(spark, NOTES, str(tmp_path / "lh"))
    spark.sql(f"ALTER TABLE delta.`{notes.location}` SET TBLPROPERTIES ('x.owner' = 'lab')")
    for i in range(3):
        notes.append(spark.createDataFrame([(f"p{i}", str(i), i)], NOTES.schema))
    detail = DeltaTable.forPath(spark, notes.location).detail().first()
    assert notes.properties() == dict(detail["properties"]) and notes.properties()["x.owner"]
    assert notes.detail()["sizeInBytes"] == detail["sizeInBytes"]
    state, files = notes.files()
    assert state.version == 4 and state.id == detail["id"]
    assert sorted(files) == sorted(p.removeprefix("file:") for p in notes.read().inputFiles())

    # what versions 2..4 appended: the rows of those files, read without Delta
    added = notes.appended_since(2, 4)
    assert _rows(notes.read_files(added, notes.state(4))) == [("p1", "1", 1), ("p2", "2", 2)]
    assert notes.appended_since(4, 4) == []
    assert notes.read_files([], notes.state(4)).collect() == []
    notes.delete(F.col("path") == "p0")
    assert notes.appended_since(2, 5) is None  # a delete is no append: compare keys then


def test_a_foreign_table_is_refused_before_anything_is_written(spark, tmp_path: Path) -> None:
    lakehouse = tmp_path / "lh"
    spark.createDataFrame([(1,)], "other int").write.format("delta").save(
        str(lakehouse / "lab" / "notes"))
    with pytest.raises(LakehouseError, match="is not lab.notes"):
        ensure_table(spark, NOTES, str(lakehouse))
    assert Table(spark, str(lakehouse / "lab" / "notes")).version() == 0


def test_no_layer_opens_a_delta_table_itself() -> None:
    """Every read and write of a table goes through common.lake (and Delta's log through
    common.delta_log): the layers and the rest of common name neither DeltaTable nor the
    delta reader."""
    root = Path(__file__).resolve().parents[2]
    allowed = {root / "common" / "lake.py", root / "common" / "delta_log.py"}
    found = []
    for package in ("bronze", "silver", "gold", "common"):
        for module in sorted((root / package).rglob("*.py")):
            if module in allowed:
                continue
            text = module.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and node.module == "delta.tables":
                    found.append(f"{module.relative_to(root)} imports delta.tables")
                if isinstance(node, ast.Constant) and node.value == "delta":
                    found.append(f"{module.relative_to(root)}:{node.lineno} names the format")
    assert found == []
