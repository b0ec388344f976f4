"""Routine Delta table properties a user may set on the product's tables: deletion vectors
and the change data feed keep every job working; column mapping stops a job before it
changes anything, with a message that names the property."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gold.helpers import RANDOM, bronze_silver, gold, gold_features
from tests.imagegen import gradient, jpeg_bytes, write

pytestmark = pytest.mark.slow

TABLES = ("bronze/images", "silver/images", "silver/rejects", "gold/image_features")


def _version(spark, location: Path) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{location}` LIMIT 1").first().version


def test_deletes_merges_and_relabels_with_deletion_vectors_and_cdf(spark, lakehouse: Path,
                                                                   tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(6):
        write(source / f"Plum {i % 3}/p{i}.jpg", jpeg_bytes(gradient(seed=i)))
    write(source / "Plum 0/bad.jpg", b"not a photo")
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0
    for table in TABLES:
        spark.sql(f"ALTER TABLE delta.`{lakehouse / table}` SET TBLPROPERTIES ("
                  "'delta.enableDeletionVectors'='true', 'delta.enableChangeDataFeed'='true')")

    (source / "Plum 1/p1.jpg").unlink()  # deleted
    (source / "Plum 0/bad.jpg").unlink()  # a reject deleted
    (source / "Plum 2/p2.jpg").rename(source / "Plum 0/p2.jpg")  # relabelled
    write(source / "Plum 1/new.jpg", jpeg_bytes(gradient(seed=40)))  # new
    bronze_silver(source, lakehouse, "--sync-deletes")
    assert gold(lakehouse, *RANDOM) == 0

    expected = {"Plum 0/p0.jpg": "Plum 0", "Plum 0/p3.jpg": "Plum 0", "Plum 1/p4.jpg": "Plum 1",
                "Plum 2/p5.jpg": "Plum 2", "Plum 0/p2.jpg": "Plum 0", "Plum 1/new.jpg": "Plum 1"}
    expected = {f"file:{source / name}": label for name, label in expected.items()}
    assert {p: r.label for p, r in gold_features(spark, lakehouse).items()} == expected
    bronze = spark.read.format("delta").load(str(lakehouse / "bronze/images"))
    assert {r.path for r in bronze.collect()} == set(expected)
    assert spark.read.format("delta").load(str(lakehouse / "silver/rejects")).count() == 0

    # a user's own DELETE in the same kind of session (make sql) works too
    spark.sql(f"DELETE FROM delta.`{lakehouse / 'gold/image_features'}` "
              f"WHERE path = 'file:{source / 'Plum 2/p5.jpg'}'")
    assert len(gold_features(spark, lakehouse)) == 5


def test_column_mapping_stops_the_job_before_it_changes_anything(spark, lakehouse: Path,
                                                                 tmp_path: Path, capsys) -> None:
    source = tmp_path / "src"
    for i in range(2):
        write(source / f"Fig {i}/f{i}.jpg", jpeg_bytes(gradient(seed=i)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0
    features = lakehouse / "gold/image_features"
    spark.sql(f"ALTER TABLE delta.`{features}` SET TBLPROPERTIES ("
              "'delta.minReaderVersion'='2', 'delta.minWriterVersion'='5', "
              "'delta.columnMapping.mode'='name')")
    before = _version(spark, features)
    write(source / "Fig 0/new.jpg", jpeg_bytes(gradient(seed=7)))
    bronze_silver(source, lakehouse)
    capsys.readouterr()

    assert gold(lakehouse, *RANDOM) == 4
    err = capsys.readouterr().err
    assert "gold.image_features" in err and "delta.columnMapping.mode=name" in err
    assert _version(spark, features) == before
    assert len(gold_features(spark, lakehouse)) == 2
