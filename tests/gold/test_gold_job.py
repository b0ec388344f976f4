"""gold/job.py plumbing: increments, deletes, export, weights errors, constraints.

Random weights (``--weights random``) where only the plumbing is under test; feature
values are tested against the notebook in test_fidelity.py with the real weights.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gold import model as gold_model
from gold.model import WeightsError, resolve_weights
from tests.gold.helpers import RANDOM, bronze_silver, gold, gold_features, last_run
from tests.imagegen import gradient, jpeg_bytes, write


def test_incremental_deletes_and_export(spark, lakehouse: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(4):
        write(source / f"Lime {i % 2}/l{i}.jpg", jpeg_bytes(gradient(seed=i)))
    write(source / "Lime 0/broken.jpg", b"garbage")
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0

    first = gold_features(spark, lakehouse)
    assert {p: r.label for p, r in first.items()} == {
        f"file:{source / f'Lime {i % 2}/l{i}.jpg'}": f"Lime {i % 2}" for i in range(4)
    }
    run = last_run(spark, lakehouse, "gold")
    assert run["rows_out"] == 4 and run["details"]["model"] == "mobilenet_v2_1.0_224_avgpool@random-seed-0"
    # one engine per Python worker, not per batch: at most one per partition here
    assert run["details"]["engine_builds"] <= 2  # 0 when a reused worker has it already
    assert run["details"]["batch_size"] == 32  # gold.batch_size 0: TensorFlow's best

    assert run["details"]["changes_from"] == "keys"  # the first run: no marker yet
    assert gold(lakehouse, *RANDOM) == 0  # nothing new, shown by silver's log
    run = last_run(spark, lakehouse, "gold")
    assert (run["rows_in"], run["details"]["changes_from"]) == (0, "log")
    assert gold_features(spark, lakehouse).keys() == first.keys()

    write(source / "Lime 1/new.jpg", jpeg_bytes(gradient(seed=11)))
    (source / "Lime 0/l0.jpg").unlink()
    bronze_silver(source, lakehouse, "--sync-deletes")
    assert gold(lakehouse, *RANDOM) == 0
    run = last_run(spark, lakehouse, "gold")
    assert (run["rows_in"], run["rows_deleted"], run["details"]["model_calls"]) == (1, 1, 1)
    assert run["details"]["changes_from"] == "keys"  # silver deleted a row
    current = gold_features(spark, lakehouse)
    assert set(current) == set(first) - {f"file:{source / 'Lime 0/l0.jpg'}"} | {
        f"file:{source / 'Lime 1/new.jpg'}"}
    for path in set(current) & set(first):  # untouched rows keep their vectors
        assert current[path].features == first[path].features

    export = pd.read_parquet(lakehouse / "exports" / "image_features")
    assert list(export.columns) == ["path", "label", "features"]
    assert set(export.path) == set(current)
    for row in export.itertuples():
        assert row.features.shape == (1280,)
        np.testing.assert_array_equal(row.features, np.asarray(current[row.path].features,
                                                                dtype=np.float32))


def test_other_weights_are_not_mixed_without_rebuild(
    spark, lakehouse: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "src"
    write(source / "Fig/f.jpg", jpeg_bytes(gradient(seed=1)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0

    # a different weights file: refused without --rebuild, replaced with it
    model = gold_model._feature_model(None)
    model.save_weights(str(tmp_path / "other.weights.h5"))
    other = str(tmp_path / "other.weights.h5")
    assert gold(lakehouse, "--weights", other, "--engine", "tensorflow") == 2
    assert "--rebuild" in capsys.readouterr().err
    assert gold(lakehouse, "--weights", other, "--engine", "tensorflow", "--rebuild") == 0
    _, identity = resolve_weights(other)
    assert {r.model for r in gold_features(spark, lakehouse).values()} == {identity}


def test_missing_weights_stop_gold_before_it_writes(
    spark, lakehouse: Path, tmp_path: Path, capsys
) -> None:
    write(tmp_path / "src/Fig/f.jpg", jpeg_bytes(gradient(seed=1)))
    bronze_silver(tmp_path / "src", lakehouse)
    assert gold(lakehouse, "--weights", str(tmp_path / "nope.h5")) == 2
    err = capsys.readouterr().err
    assert "nope.h5 does not exist" in err and "KERAS_HOME" in err and "--weights" in err
    assert not (lakehouse / "gold").exists()


def test_imagenet_offline_without_cache_says_how_to_provide_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))

    def offline(weights: str | None) -> None:
        raise OSError("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(gold_model, "_feature_model", offline)
    with pytest.raises(WeightsError) as info:
        resolve_weights("imagenet")
    message = str(info.value)
    assert "URL fetch failure" in message and "KERAS_HOME" in message and "--weights" in message


def test_gold_constraints_reject_a_wrong_vector(spark, lakehouse: Path, tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from common.lake import ensure_table
    from gold.tables import GOLD_FEATURES

    location = ensure_table(spark, GOLD_FEATURES, str(lakehouse)).location
    bad = spark.createDataFrame(
        [("file:/x/a.jpg", "a", "h", [0.0] * 1279, "m", "r", datetime.now(timezone.utc))],
        GOLD_FEATURES.schema,
    )
    with pytest.raises(Exception, match="features_1280"):
        bad.write.format("delta").mode("append").save(location)
    assert spark.read.format("delta").load(location).count() == 0


def test_export_versions_grow_by_a_new_file_when_gold_only_gained_rows(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    for i in range(3):
        write(source / f"Kiwi/k{i}.jpg", jpeg_bytes(gradient(seed=20 + i)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0
    export = lakehouse / "exports" / "image_features"
    versions = lakehouse / "exports" / "image_features.versions"
    assert export.is_symlink()
    first = export.resolve()
    assert first.parent == versions and (versions / "_LATEST").read_text() == first.name
    first_files = {p.name: p.stat().st_ino for p in first.glob("*.parquet")}
    # what a gold run killed before its switch leaves: a folder nothing points at
    killed = versions / f"v{int(first.name[1:9]) + 1:08d}-20261201T000000000000Z"
    killed.mkdir()
    shutil.copy(first / sorted(first_files)[0], killed / "part-00000.parquet")
    os.utime(killed, (time.time() - 7200, time.time() - 7200))

    write(source / "Kiwi/k9.jpg", jpeg_bytes(gradient(seed=29)))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse, *RANDOM) == 0
    run = last_run(spark, lakehouse, "gold")  # silver only appended: read from its log
    assert (run["details"]["changes_from"], run["rows_out"]) == ("log", 1)
    second = export.resolve()
    assert second != first and run["details"]["export"] == f"{second}"
    assert (versions / "_LATEST").read_text() == second.name
    now = {p.name: p.stat().st_ino for p in second.glob("*.parquet")}
    # the previous files are the same files (hard links), one new file holds the new row
    new = set(now) - set(first_files)
    assert all(now[name] == first_files[name] for name in first_files) and len(new) == 1
    assert list(pd.read_parquet(second / new.pop()).path) == [f"file:{source / 'Kiwi/k9.jpg'}"]
    assert not killed.exists()  # the killed run's folder, older than the grace period
    assert first.is_dir()  # the former version: kept for gold.export_keep_minutes

    current = gold_features(spark, lakehouse)
    for read in (export, second):
        frame = pd.read_parquet(read)
        assert sorted(frame.path) == sorted(current)
        for row in frame.itertuples():
            assert row.label == "Kiwi"
            np.testing.assert_array_equal(row.features, np.asarray(current[row.path].features,
                                                                    dtype=np.float32))
    assert gold(lakehouse, *RANDOM, "--set", "gold.export_keep_minutes=0") == 0  # no change
    assert export.resolve() == second and not first.exists()
    assert sorted(p.name for p in versions.iterdir()) == ["_LATEST", second.name]


def test_an_export_of_an_older_release_is_moved_aside_and_replaced(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    write(source / "Fig/f.jpg", jpeg_bytes(gradient(seed=3)))
    bronze_silver(source, lakehouse)
    export = lakehouse / "exports" / "image_features"
    export.mkdir(parents=True)  # the plain folder an older release wrote
    pd.DataFrame({"path": ["old"], "label": ["x"]}).to_parquet(export / "part-0.parquet")
    (export / "_gold_version").write_text("0")
    assert gold(lakehouse, *RANDOM) == 0
    assert export.is_symlink()
    assert list(pd.read_parquet(export).path) == [f"file:{source / 'Fig/f.jpg'}"]
    legacy = [p for p in export.parent.joinpath("image_features.versions").iterdir()
              if p.name.startswith("legacy-")]
    assert len(legacy) == 1 and (legacy[0] / "_gold_version").read_text() == "0"


def test_readers_and_writers_give_the_same_tables(spark, lakehouse: Path,
                                                  tmp_path: Path) -> None:
    """gold.image_reader and gold.writer: the workers' reader and writer (the local
    defaults) and Spark's give the features of each photo's own pixels, the same table
    and the same export, from a lakehouse whose path needs quoting."""
    from common.images import DecodeLimits, decode_for_model
    from tests.conftest import DATABASES

    source = tmp_path / "src"
    photos = {f"Pear {i % 2}/p{i}.jpg": jpeg_bytes(gradient(90 + i, 100, seed=30 + i))
              for i in range(5)}
    weights, _ = gold_model.load_weights("random")
    engine = gold_model.TensorflowEngine(weights, threads=1)
    limits = DecodeLimits(max_pixels=10**8, min_side=32)
    names = sorted(photos)
    pixels = np.stack([np.frombuffer(decode_for_model(photos[n], limits).pixels, np.uint8)
                       .reshape(224, 224, 3) for n in names])
    expected = gold_model.featurize(engine, pixels, batch_size=len(names))

    tables = {}
    for reader, writer in (("workers", "workers"), ("workers", "spark"), ("spark", "spark")):
        for database in DATABASES:
            spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
        shutil.rmtree(source, ignore_errors=True)
        lake = tmp_path / f"lake hoüse #{reader}-{writer}"  # Spark quotes the files' URIs
        # three photos, then two more: the second run reads silver's new files from its
        # log (common.incremental.changes_from_log)
        for batch, via in ((names[:3], "keys"), (names[3:], "log")):
            for name in batch:
                write(source / name, photos[name])
            bronze_silver(source, lake)
            assert gold(lake, *RANDOM, "--set", f"gold.image_reader={reader}",
                        "--set", f"gold.writer={writer}") == 0
            run = last_run(spark, lake, "gold")
            assert (run["details"]["image_reader"], run["details"]["writer"],
                    run["rows_out"]) == (reader, writer, len(batch))
            assert run["details"]["changes_from"] == via
            for name in batch:  # each row carries its run, whoever wrote it
                row = gold_features(spark, lake)[f"file:{source / name}"]
                assert row.run_id == run["run_id"]
                assert run["started_at"] <= row.processed_at <= run["ended_at"]
        stored = gold_features(spark, lake)
        assert sorted(stored) == sorted(f"file:{source / name}" for name in names)
        for name, vector in zip(names, expected):
            row = stored[f"file:{source / name}"]
            assert row.label == name.split("/")[0]
            np.testing.assert_allclose(np.asarray(row.features, np.float32), vector,
                                       rtol=0, atol=1e-5)
        export = pd.read_parquet(lake / "exports" / "image_features")
        assert sorted(export.path) == sorted(stored)
        for row in export.itertuples():
            np.testing.assert_array_equal(
                row.features, np.asarray(stored[row.path].features, np.float32))
        tables[reader, writer] = {p: (r.label, r.content_hash, r.model, r.features)
                                  for p, r in stored.items()}
    # Same model, same pixels, same batches: the same bits whoever writes them.
    assert tables["workers", "workers"] == tables["workers", "spark"] == tables["spark", "spark"]


def test_an_untested_delta_release_gets_the_public_routes_and_the_same_table(
        spark, lakehouse: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """With a Delta release other than those common.delta_log was tested with, no log
    file is read and no private class is used: the keys are compared and Spark writes,
    the run says so, and the table is the one the private routes make."""
    import importlib.metadata

    from common import delta_log
    from tests.conftest import DATABASES

    # The JVM's Delta is the pip package's release, which is the one tested.
    assert delta_log.delta_version(spark) == importlib.metadata.version("delta-spark")
    assert delta_log.delta_version(spark) in delta_log.TESTED_DELTA
    source = tmp_path / "src"
    photos = {f"Kiwi/k{i}.jpg": jpeg_bytes(gradient(60 + i, 80, seed=70 + i)) for i in range(4)}
    tables = {}
    for tested in (True, False):
        for database in DATABASES:  # the names point at the previous lakehouse
            spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
        lake = tmp_path / f"lake-{tested}"
        capsys.readouterr()
        shutil.rmtree(source, ignore_errors=True)
        with monkeypatch.context() as patch:
            if not tested:
                patch.setattr(delta_log, "TESTED_DELTA", ())
                patch.setattr(delta_log, "_RUNNING", {})
            for batch in (sorted(photos)[:2], sorted(photos)[2:]):
                for name in batch:
                    write(source / name, photos[name])
                bronze_silver(source, lake)
                assert gold(lake, *RANDOM) == 0
            run = last_run(spark, lake, "gold")
            location = str(lake / "gold" / "image_features")
            found = (delta_log.checksum(spark, location), delta_log.read_commit(
                spark, location, 0), delta_log.open_transaction(spark, location))
        # The run log holds gold's settings as used: every "auto" and 0 resolved.
        settings = run["details"]["settings"]
        assert (settings["image_reader"], settings["writer"], settings["inference_threads"],
                settings["batch_size"]) == ("workers", "workers" if tested else "spark", 1, 32)
        if tested:
            assert (run["details"]["changes_from"], run["details"]["writer"]) == (
                "log", "workers")
            assert all(value is not None for value in found)
        else:
            assert (run["details"]["changes_from"], run["details"]["writer"]) == (
                "keys", "spark")
            assert found == (None, None, None)
            said = capsys.readouterr().err
            assert said.count("is not a release this product's log reading") == 1, said
        tables[tested] = {p: (r.label, r.content_hash, r.model, r.features)
                          for p, r in gold_features(spark, lake).items()}
    assert len(tables[True]) == 4
    assert tables[True] == tables[False]
