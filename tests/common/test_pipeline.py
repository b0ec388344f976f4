"""common/pipeline.py (make pipeline): the four layers in one Spark application."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import submit
from tests.imagegen import gradient, jpeg_bytes, write

GOLD = ["--weights", "random", "--engine", "tensorflow", "--set", "pca.min_rows=4"]


def _table(spark, lakehouse: Path, name: str):  # noqa: ANN202
    return spark.read.format("delta").load(str(lakehouse / name))


@pytest.mark.slow
def test_one_application_runs_every_layer_and_then_only_new_images(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    source = tmp_path / "photos"
    for i in range(5):
        write(source / f"Pear {i % 2}" / f"p{i}.jpg", jpeg_bytes(gradient(seed=40 + i)))
    write(source / "Pear 0" / "notes.jpg", b"not a photo")

    code, output = submit.run("pipeline", lakehouse, "--source", str(source), *GOLD)
    assert code == 0, output[-3000:]
    for job in ("bronze", "silver", "gold", "pca"):
        assert f"{job} succeeded in " in output
    assert "pipeline succeeded in " in output and "== Rows per layer ==" in output

    images = {f"file:{source / f'Pear {i % 2}' / f'p{i}.jpg'}": f"Pear {i % 2}" for i in range(5)}
    bad = f"file:{source / 'Pear 0' / 'notes.jpg'}"
    assert {r.path for r in _table(spark, lakehouse, "bronze/images").collect()} == {
        *images, bad}
    assert {(r.path, r.reason) for r in _table(spark, lakehouse, "silver/rejects").collect()} == {
        (bad, "not_an_image")}
    assert {r.path: r.label for r in _table(spark, lakehouse, "gold/image_features").collect()} \
        == images
    assert {r.path for r in _table(spark, lakehouse, "gold/image_features_pca").collect()} == set(
        images)
    # one application, but one run-log row per layer, each with its own run id
    runs = _table(spark, lakehouse, "ops/runs").orderBy("started_at").collect()
    assert [r.job for r in runs] == ["bronze", "silver", "gold", "pca"]
    assert len({r.run_id for r in runs}) == 4
    assert len({r.app_id for r in runs}) == 1
    assert all(r.status == "succeeded" for r in runs)

    write(source / "Pear 1" / "new.jpg", jpeg_bytes(gradient(seed=49)))
    code, output = submit.run("pipeline", lakehouse, "--source", str(source), *GOLD)
    assert code == 0, output[-3000:]
    runs = _table(spark, lakehouse, "ops/runs").orderBy("started_at").collect()[4:]
    assert [(r.job, r.rows_out) for r in runs] == [
        ("bronze", 1), ("silver", 1), ("gold", 1), ("pca", 1)]
    assert json.loads(runs[2].details)["model_calls"] == 1
    assert f"file:{source / 'Pear 1' / 'new.jpg'}" in {
        r.path for r in _table(spark, lakehouse, "gold/image_features_pca").collect()}


def test_bad_arguments_stop_the_pipeline_before_anything_is_created(tmp_path: Path) -> None:
    from common.pipeline import main

    lakehouse = tmp_path / "lh"
    assert main(["--source", str(tmp_path / "missing"), "--lakehouse", str(lakehouse)]) == 2
    assert main(["--lakehouse", str(lakehouse)]) == 2
    assert not lakehouse.exists()


def test_common_imports_no_layer_and_the_pipeline_finds_each_registered_layer() -> None:
    import ast

    from common.layers import pipeline_layers

    root = Path(__file__).resolve().parents[2]
    for module in sorted((root / "common").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("bronze", "silver", "gold"), (
                    f"{module.name} imports {name}")
    assert [layer.job for layer in pipeline_layers()] == [
        "bronze", "silver", "gold", "pca", "predict"]


def test_pca_and_predict_step_out_of_the_pipeline_when_asked_or_without_a_model(
        tmp_path: Path) -> None:
    from common.config import load_config
    from common.layers import PipelineOptions
    from gold import pca_job, predict_job

    config = load_config("local", {"lakehouse": str(tmp_path / "lh")})
    assert pca_job.LAYER.body(config, PipelineOptions(pca=False)) is None
    assert pca_job.LAYER.body(config, PipelineOptions()) is not None
    assert predict_job.LAYER.body(config, PipelineOptions()) is None  # nothing trained
    version = tmp_path / "lh" / "models" / "classifier" / "v0001"
    version.mkdir(parents=True)
    (version / "classifier.json").write_text("{}")  # a complete version serves
    assert predict_job.LAYER.body(config, PipelineOptions()) is predict_job.predict_new


EXTRA_TABLES = """
from pyspark.sql import types as T

from common.tables import TableSpec, field

COUNTS = TableSpec("extra", "counts", T.StructType([field("images", T.LongType(), False)]))
TABLES = (COUNTS,)
"""

EXTRA_JOB = """
from bronze.tables import BRONZE_IMAGES
from common.lake import ensure_table, table
from common.layers import Layer
from extra_layer.tables import COUNTS


def count(spark, config, run):
    counts = ensure_table(spark, COUNTS, config.lakehouse)
    images = table(spark, BRONZE_IMAGES, config.lakehouse).read().count()
    counts.append(spark.createDataFrame([(images,)], COUNTS.schema))
    run.rows_out = images
    run.details["seen_by"] = "extra"


LAYER = Layer("extra", body=lambda config, options: count)
"""


def test_a_layer_registered_by_one_line_runs_in_the_pipeline_with_its_own_table(
        spark, lakehouse: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """A new layer is its package (a job module declaring LAYER, a tables module
    declaring TABLES) and one line in common.layers.PIPELINE: the pipeline runs it, its
    table is created, registered by name and counted in the summary, and make sql's
    init file names it."""
    from common import layers
    from common.pipeline import main
    from common.sql import write_init
    from common.tables import all_tables

    package = tmp_path / "code" / "extra_layer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tables.py").write_text(EXTRA_TABLES)
    (package / "job.py").write_text(EXTRA_JOB)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setattr(layers, "PIPELINE", ("bronze.job", "extra_layer.job"))
    assert [spec.name for spec in all_tables()] == ["bronze.images", "extra.counts",
                                                     "ops.runs"]
    source = tmp_path / "photos"
    for i in range(3):
        write(source / "Fig" / f"f{i}.jpg", jpeg_bytes(gradient(seed=60 + i)))
    capsys.readouterr()
    assert main(["--source", str(source), "--lakehouse", str(lakehouse)]) == 0
    said = capsys.readouterr().out
    runs = _table(spark, lakehouse, "ops/runs").orderBy("started_at").collect()
    assert [(r.job, r.status, r.rows_out) for r in runs] == [
        ("bronze", "succeeded", 3), ("extra", "succeeded", 3)]
    assert json.loads(runs[1].details)["seen_by"] == "extra"
    assert [r.images for r in spark.sql("SELECT images FROM extra.counts").collect()] == [3]
    summary = said[said.index("== Rows per layer =="):]
    assert [line.split() for line in summary.splitlines()[3:5]] == [
        ["bronze.images", "3"], ["extra.counts", "1"]], summary
    from common.config import load_config

    init = Path(write_init(load_config("local", {"lakehouse": str(lakehouse)}))).read_text()
    assert f"CREATE TABLE IF NOT EXISTS extra.counts USING delta LOCATION " \
           f"'{lakehouse / 'extra' / 'counts'}';" in init
