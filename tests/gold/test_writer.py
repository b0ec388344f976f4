"""gold/writer.py: gold's files written by the workers, committed by the driver."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gold.writer import ARROW_SCHEMA, gold_table, open_commit
from tests.gold.helpers import RANDOM, bronze_silver, gold, gold_features, last_run
from tests.imagegen import gradient, jpeg_bytes, write

NOW = datetime(2026, 11, 27, 20, 1, 2, 345678, tzinfo=timezone.utc)


def keys(*paths: str) -> pa.Table:
    return pa.table({"path": list(paths), "label": [p.split("/")[-2] for p in paths],
                     "content_hash": [f"h{i}" for i in range(len(paths))]})


def test_gold_table_holds_the_rows_as_spark_reads_them(spark, tmp_path: Path) -> None:
    vectors = np.random.default_rng(5).normal(size=(2, 1280)).astype(np.float32)
    rows = gold_table(keys("file:/p/Kiwi/a.jpg", "file:/p/Fig/b.jpg"), vectors, "m@1", "r-1",
                      NOW)
    assert rows.schema == ARROW_SCHEMA
    pq.write_table(rows, tmp_path / "part.parquet")
    read = spark.read.parquet(str(tmp_path / "part.parquet")).orderBy("path").collect()
    assert [(r.path, r.label, r.content_hash, r.model, r.run_id) for r in read] == [
        ("file:/p/Fig/b.jpg", "Fig", "h1", "m@1", "r-1"),
        ("file:/p/Kiwi/a.jpg", "Kiwi", "h0", "m@1", "r-1")]
    np.testing.assert_array_equal(np.asarray([read[1].features, read[0].features],
                                             np.float32), vectors)
    # the run's time to the microsecond (Spark gives it in the session's zone, UTC)
    assert read[0].processed_at == NOW.replace(tzinfo=None)


@pytest.mark.parametrize(
    ("vectors", "paths", "message"),
    [
        (np.zeros((2, 1279), np.float32), ("file:/p/A/a.jpg", "file:/p/A/b.jpg"),
         "1280 features each"),
        (np.zeros((1, 1280), np.float32), ("file:/p/A/a.jpg", "file:/p/A/b.jpg"),
         "1280 features each"),
        (np.zeros((2, 1280), np.float32), ("file:/p/A/a.jpg", None), "a path in every row"),
    ],
)
def test_gold_table_refuses_what_the_table_would(vectors, paths, message) -> None:
    frame = pa.table({"path": pa.array(paths, pa.string()), "label": ["A", "A"],
                      "content_hash": ["h0", "h1"]})
    with pytest.raises(ValueError, match=message):
        gold_table(frame, vectors, "m", "r", NOW)


def test_workers_write_only_the_products_own_table(spark, lakehouse: Path,
                                                   tmp_path: Path) -> None:
    """A gold table with a rule of its user (here a constraint) is written by Spark's
    Delta writer, which applies it: auto picks Spark, an explicit workers stops."""
    from common.lake import ensure_table
    from gold.tables import GOLD_FEATURES

    location = ensure_table(spark, GOLD_FEATURES, str(lakehouse)).location
    commit, why = open_commit(spark, location)
    assert commit is not None and why == ""
    spark.sql(f"ALTER TABLE delta.`{location}` ADD CONSTRAINT known_label CHECK "
              "(label <> 'Unknown')")
    commit, why = open_commit(spark, location)
    assert commit is None and why == "its constraints are not gold.image_features' own"

    source = tmp_path / "src"
    write(source / "Unknown/a.jpg", jpeg_bytes(gradient(seed=1)))
    write(source / "Plum/b.jpg", jpeg_bytes(gradient(seed=2)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM, "--set", "gold.writer=workers") != 0
    assert gold_features(spark, lakehouse) == {}
    # auto: Spark writes, and its Delta writer enforces the user's constraint
    assert gold(lakehouse, *RANDOM) != 0
    assert gold_features(spark, lakehouse) == {}
    (source / "Unknown/a.jpg").unlink()
    bronze_silver(source, lakehouse, "--sync-deletes")
    assert gold(lakehouse, *RANDOM) == 0
    assert last_run(spark, lakehouse, "gold")["details"]["writer"] == "spark"
    assert sorted(gold_features(spark, lakehouse)) == [f"file:{source / 'Plum/b.jpg'}"]


def test_files_of_an_uncommitted_run_are_not_in_the_table(spark, lakehouse: Path,
                                                         tmp_path: Path, monkeypatch) -> None:
    """Files written by the workers are in the table only once the commit names them:
    a run that fails after writing them leaves the table as it was, and the next run
    writes each row once."""
    from common import delta_log

    source = tmp_path / "src"
    for i in range(3):
        write(source / f"Date/d{i}.jpg", jpeg_bytes(gradient(seed=40 + i)))
    bronze_silver(source, lakehouse)
    folder = lakehouse / "gold" / "image_features"

    def fail(self, files, user_metadata):  # noqa: ANN001, ANN202
        raise OSError("the disk went away")

    with monkeypatch.context() as patch:
        patch.setattr(delta_log.Transaction, "add", fail)
        assert gold(lakehouse, *RANDOM) != 0
    left = sorted(folder.glob("*.parquet"))
    assert left and sum(pq.read_metadata(f).num_rows for f in left) == 3
    assert gold_features(spark, lakehouse) == {}

    assert gold(lakehouse, *RANDOM) == 0
    run = last_run(spark, lakehouse, "gold")
    assert (run["details"]["writer"], run["rows_out"]) == ("workers", 3)
    stored = gold_features(spark, lakehouse)
    assert sorted(stored) == sorted(f"file:{source / f'Date/d{i}.jpg'}" for i in range(3))
    assert {r.run_id for r in stored.values()} == {run["run_id"]}
    assert spark.sql(f"SELECT count(*) AS n FROM delta.`{folder}`").first().n == 3
