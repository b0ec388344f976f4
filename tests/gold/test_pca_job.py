"""PCA job: k selection on known structure, projection vs NumPy, increments, refit, guards."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from delta.tables import DeltaTable
from PIL import Image
from pyspark.sql import functions as F

from common.lake import ensure_table
from gold.pca import choose_k
from gold.pca_job import main as pca_main
from gold.tables import GOLD_FEATURES
from tests.gold.helpers import last_run

OPTS = ["--set", "spark.shuffle_partitions=2", "--set", "pca.min_rows=10"]


def structured_features(rows: int, seed: int = 0) -> np.ndarray:
    """Rows whose variance lies 100:50:25 on 3 directions, plus faint noise (~99.3% in 3)."""
    rng = np.random.default_rng(seed)
    directions, _ = np.linalg.qr(rng.normal(size=(1280, 3)))
    scores = rng.normal(size=(rows, 3)) * np.sqrt([100.0, 50.0, 25.0])
    noise = rng.normal(scale=np.sqrt(1e-3), size=(rows, 1280))
    return (5.0 + scores @ directions.T + noise).astype(np.float32)


def write_gold(spark, lakehouse: Path, features: np.ndarray, start: int = 0) -> list[str]:
    location = ensure_table(spark, GOLD_FEATURES, str(lakehouse)).location
    now = datetime.now(timezone.utc)
    paths = [f"file:/photos/L{(start + i) % 3}/img{start + i}.jpg" for i in range(len(features))]
    rows = [(p, f"L{(start + i) % 3}", f"h{start + i}", [float(v) for v in f], "m", "r", now)
            for i, (p, f) in enumerate(zip(paths, features))]
    spark.createDataFrame(rows, GOLD_FEATURES.schema).write.format("delta").mode(
        "append").save(location)
    return paths


def pca_rows(spark, lakehouse: Path) -> dict:
    frame = spark.read.format("delta").load(str(lakehouse / "gold" / "image_features_pca"))
    return {r.path: r for r in frame.collect()}


def run(lakehouse: Path, *extra: str) -> int:
    return pca_main(["--lakehouse", str(lakehouse), *OPTS, *extra])


def test_choose_k() -> None:
    explained = np.array([0.5, 0.3, 0.15, 0.05])
    assert choose_k(explained, 0.95) == 3
    assert choose_k(explained, 0.5) == 1
    assert choose_k(explained, 1.0) == 4
    assert choose_k(explained, 0.95, fixed_k=2) == 2


def test_fit_project_increment_refit(spark, lakehouse: Path) -> None:
    features = structured_features(60)
    paths = write_gold(spark, lakehouse, features)
    assert run(lakehouse) == 0

    rows = pca_rows(spark, lakehouse)
    assert set(rows) == set(paths)
    assert {len(r.pca) for r in rows.values()} == {3}
    assert {r.pca_version for r in rows.values()} == {"v0001"}
    meta = json.loads((lakehouse / "models/pca/v0001/metadata.json").read_text())
    assert meta["k"] == 3 and 0.99 < meta["variance_kept"] < 1.0 and meta["rows"] == 60

    # Projection = centred rows onto the top 3 principal axes (NumPy SVD), up to sign.
    centred = features.astype(np.float64) - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:3].T
    got = np.array([rows[p].pca for p in paths], dtype=np.float64)
    signs = np.sign(np.sum(got * expected, axis=0))
    np.testing.assert_allclose(got * signs, expected, atol=2e-3 * np.abs(expected).max())

    for name in ("explained_variance.png", "scatter_pc1_pc2.png"):
        with Image.open(lakehouse / "reports/pca" / name) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    summary = json.loads((lakehouse / "reports/pca/summary.json").read_text())
    assert (summary["k"], summary["rows"], summary["version"]) == (3, 60, "v0001")

    first_run = {p: r.run_id for p, r in rows.items()}
    new_paths = write_gold(spark, lakehouse, structured_features(5, seed=1), start=60)
    DeltaTable.forPath(spark, str(lakehouse / "gold/image_features")).delete(
        F.col("path") == paths[0])
    assert run(lakehouse) == 0
    rows = pca_rows(spark, lakehouse)
    paths, gone = paths[1:], paths[0]
    assert set(rows) == set(paths) | set(new_paths)  # the deleted gold row left
    first_run.pop(gone)
    assert {p: rows[p].run_id for p in paths} == first_run  # old rows untouched
    assert len({rows[p].run_id for p in new_paths} - set(first_run.values())) == 1
    assert last_run(spark, lakehouse, "pca")["rows_in"] == 5
    assert not (lakehouse / "models/pca/v0002").exists()  # no refit without --refit

    assert run(lakehouse, "--refit", "--k", "2") == 0
    rows = pca_rows(spark, lakehouse)
    assert {r.pca_version for r in rows.values()} == {"v0002"}
    assert {len(r.pca) for r in rows.values()} == {2}
    assert json.loads((lakehouse / "models/pca/v0002/metadata.json").read_text())["k"] == 2


def test_too_few_rows_writes_nothing(spark, lakehouse: Path, capsys) -> None:
    write_gold(spark, lakehouse, structured_features(4))
    assert run(lakehouse) == 2
    assert "has 4 rows" in capsys.readouterr().err
    assert not (lakehouse / "gold" / "image_features_pca").exists()
    assert not (lakehouse / "models").exists()
