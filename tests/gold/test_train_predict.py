"""make train and make predict on gold rows of known structure: versions, serving,
evaluation, and gold.predictions kept exactly in step with gold."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from common.lake import ensure_table, table
from gold.classifier import prepare
from gold.predict import serving_state
from gold.predict_job import main as predict_main
from gold.tables import GOLD_FEATURES
from gold.train_job import main as train_main, with_prepared
from tests.gold.helpers import last_run

OPTS = ["--set", "spark.shuffle_partitions=2", "--set", "classifier.min_rows=10"]
# label -> species; "Mystery" is in no map
SPECIES = {"Red 1": "Apple", "Red 2": "Apple", "Yellow": "Banana", "Green": "Kiwi"}
CENTRES = {"Red 1": 0, "Red 2": 1, "Yellow": 2, "Green": 3, "Mystery": 4}


def species_map(tmp_path: Path) -> Path:
    path = tmp_path / "species.csv"
    path.write_text("label,species,dataset\n" + "".join(
        f"{label},{species},{'studio' if label != 'Green' else 'phone'}\n"
        for label, species in SPECIES.items()))
    return path


def gold_rows(spark, lakehouse: Path, labels: list[str], start: int, folder: str = "photos"
              ) -> dict[str, str]:
    """Gold rows near one of five well-apart centres each; returns path -> label."""
    rng = np.random.default_rng(start)
    centres = np.random.default_rng(99).random((5, 1280)) * 2
    location = ensure_table(spark, GOLD_FEATURES, str(lakehouse)).location
    now = datetime.now(timezone.utc)
    rows, paths = [], {}
    for i, label in enumerate(labels):
        path = f"file:/{folder}/{label}/img{start + i}.jpg"
        vector = centres[CENTRES[label]] + rng.normal(scale=0.3, size=1280)
        rows.append((path, label, f"h{start + i}", [float(v) for v in np.maximum(vector, 0)],
                     "mobilenet@sha256:test", "gold-run", now))
        paths[path] = label
    spark.createDataFrame(rows, GOLD_FEATURES.schema).write.format("delta").mode(
        "append").save(location)
    return paths


def predictions(spark, lakehouse: Path) -> dict:
    frame = spark.read.format("delta").load(str(lakehouse / "gold" / "predictions"))
    return {r.path: r for r in frame.collect()}


def test_train_version_serve_predict_incrementally_and_promote(
    spark, lakehouse: Path, tmp_path: Path
) -> None:
    base = ["--lakehouse", str(lakehouse), *OPTS]
    train = [*base, "--species-map", str(species_map(tmp_path)),
             "--eval-root", "file:/eval/"]
    assert predict_main(base) == 2  # no model yet: says how to train, touches nothing
    assert not (lakehouse / "gold" / "predictions").exists()

    labels = [label for label in CENTRES for _ in range(12)]
    paths = gold_rows(spark, lakehouse, labels, 0)
    held_out = gold_rows(spark, lakehouse, [lab for lab in SPECIES for _ in range(3)], 100,
                         folder="eval")
    # an evaluation root that holds no gold row: exit 2 before any version or table
    assert train_main([*train, "--eval-root", "file:/nowhere/"]) == 2
    assert not (lakehouse / "gold" / "classifier_models").exists()
    assert not (lakehouse / "models" / "classifier").exists()
    assert train_main(train) == 0
    assert serving_state(str(lakehouse)) == {"version": "v0001", "pinned": False}
    models = spark.read.format("delta").load(str(lakehouse / "gold" / "classifier_models"))
    (first,) = models.collect()
    assert (first.version, first.serving, first.species) == ("v0001", True,
                                                              ["Apple", "Banana", "Kiwi"])
    # 48 mapped rows; a hashed share calibrates, the others train; Mystery left out
    assert sum(first.rows_per_source.values()) == last_run(spark, lakehouse, "train")["rows_in"]
    assert set(first.rows_per_source) == {"studio", "phone"}
    metrics = json.loads(first.metrics)["sources"]
    assert metrics == {"file:/eval/": {"rows": 12, "top1": 1.0, "top3": 1.0,
                                       "unknown": metrics["file:/eval/"]["unknown"]}}
    report = lakehouse / "reports" / "classifier" / "v0001"
    assert {p.name for p in report.iterdir()} >= {"metrics.json", "accuracy.png",
                                                  "confusion.png"}

    assert predict_main(base) == 0
    rows = predictions(spark, lakehouse)
    everything = {**paths, **held_out}
    assert set(rows) == set(everything)
    for path, label in everything.items():
        if label in SPECIES:
            assert rows[path].species == SPECIES[label], path
            assert rows[path].closest_label in {k for k, v in SPECIES.items()
                                                if v == SPECIES[label]}
        assert rows[path].model_version == "v0001"
        assert [t.species for t in rows[path].top][0] == rows[path].species
        assert len(rows[path].top) == 3
        assert rows[path].probability == rows[path].top[0].probability
    first_run = last_run(spark, lakehouse, "predict")["run_id"]

    # new gold rows: only they are predicted; a gold row that left takes its row along
    new = gold_rows(spark, lakehouse, ["Yellow", "Green"], 200)
    gone = next(iter(paths))
    spark.sql(f"DELETE FROM delta.`{lakehouse / 'gold' / 'image_features'}` "
              f"WHERE path = '{gone}'")
    assert predict_main(base) == 0
    run = last_run(spark, lakehouse, "predict")
    assert (run["rows_in"], run["rows_deleted"]) == (2, 1)
    rows = predictions(spark, lakehouse)
    assert set(rows) == (set(everything) | set(new)) - {gone}
    assert {rows[p].species for p in new} == {"Banana", "Kiwi"}
    assert {r.run_id for p, r in rows.items() if p not in new} == {first_run}

    # a second version serves at once; promoting the first pins it; each re-predicts all
    assert train_main(train) == 0
    assert predict_main(base) == 0
    assert {r.model_version for r in predictions(spark, lakehouse).values()} == {"v0002"}
    assert train_main([*base, "--promote", "v0001"]) == 0
    assert serving_state(str(lakehouse)) == {"version": "v0001", "pinned": True}
    assert predict_main(base) == 0
    assert {r.model_version for r in predictions(spark, lakehouse).values()} == {"v0001"}
    assert last_run(spark, lakehouse, "predict")["rows_in"] == len(rows)
    flags = {r.version: r.serving for r in spark.read.format("delta").load(
        str(lakehouse / "gold" / "classifier_models")).collect()}
    assert flags == {"v0001": True, "v0002": False}
    assert train_main([*base, "--promote", "v0009"]) == 2
    assert train_main([*base, "--promote", "latest"]) == 0
    assert serving_state(str(lakehouse)) == {"version": "v0002", "pinned": False}


def test_training_needs_mapped_rows_and_a_readable_map(spark, lakehouse: Path,
                                                       tmp_path: Path) -> None:
    base = ["--lakehouse", str(lakehouse), *OPTS]
    assert train_main(base) == 2  # no gold yet
    gold_rows(spark, lakehouse, ["Mystery"] * 30, 0)
    assert train_main([*base, "--species-map", str(species_map(tmp_path))]) == 2
    assert train_main([*base, "--species-map", str(tmp_path / "nope.csv")]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("label;species\n")
    assert train_main([*base, "--species-map", str(bad)]) == 2
    assert not (lakehouse / "models" / "classifier").exists()
    assert not (lakehouse / "gold" / "classifier_models").exists()


def test_spark_prepares_features_as_the_classifier_does(spark) -> None:
    rng = np.random.default_rng(3)
    rows = np.abs(rng.normal(0, 2, (5, 1280))).astype(np.float32)
    rows[3] = 0.0  # an all-zero row stays zero on both sides
    rows[4, :7] = -1.0  # ReLU6 features are never negative; a negative counts as 0
    frame = spark.createDataFrame([(i, r.tolist()) for i, r in enumerate(rows)],
                                  "i int, features array<float>")
    got = {r["i"]: r["vector"].toArray() for r in with_prepared(frame).collect()}
    expected = prepare(rows)
    for i in range(5):
        np.testing.assert_allclose(got[i], expected[i], rtol=1e-6, atol=1e-7)
    assert np.isclose(np.linalg.norm(expected[0]), 1.0) and not expected[3].any()


def test_the_fit_on_shifted_features_answers_as_a_fit_on_the_features(spark, monkeypatch
                                                                      ) -> None:
    """fit_logistic adds FIT_SHIFT to every feature (dense blocks) and folds it back into
    the intercepts: its answers equal those of Spark ML's fit on the rows as they are.
    A large shift here, so that a wrong fold could not hide in the tolerance."""
    from dataclasses import replace

    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import Vectors

    from common.config import load_config
    from gold import train_job
    from gold.classifier import softmax

    monkeypatch.setattr(train_job, "FIT_SHIFT", 3.0)
    rng = np.random.default_rng(5)
    x = np.maximum(rng.normal(0, 1, (90, 12)), 0)  # about half the values are 0
    x[:, :3] += np.repeat(np.eye(3), 30, axis=0) * 1.5  # class k is strong in feature k
    y, w = np.repeat(np.arange(3), 30), rng.uniform(0.5, 2, 90)
    frame = spark.createDataFrame(
        [(Vectors.dense(x[i]), float(y[i]), float(w[i])) for i in range(90)],
        ["vector", "target", "weight"])
    settings = replace(load_config("local").classifier, reg_param=0.01, max_iter=500)
    coefficients, intercepts = train_job.fit_logistic(frame, settings)
    plain = LogisticRegression(featuresCol="vector", labelCol="target", weightCol="weight",
                               family="multinomial", regParam=0.01, maxIter=500,
                               standardization=False).fit(frame)
    expected = np.array([r["p"] for r in plain.transform(frame).select(
        vector_to_array("probability").alias("p")).collect()])
    got = softmax(x @ coefficients.T + intercepts)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert (got.argmax(axis=1) == y).mean() > 0.8  # a model that learned something


@pytest.mark.slow
def test_views_of_real_photos_come_from_silver_through_golds_engine(
        spark, lakehouse: Path, imagenet) -> None:
    from common.config import ConfigError, load_config
    from common.images import DecodeLimits, decode_for_model, model_views, pixels_to_array
    from silver.tables import SILVER_IMAGES
    from gold.model import build_engine, build_payload, featurize
    from gold.predict import view_maker, with_view_features
    from tests.gold.service_helpers import fruit, jpeg

    config = load_config("local", {"lakehouse": str(lakehouse)})
    limits = DecodeLimits(config.silver.max_pixels, config.silver.min_side)

    photos = {f"file:/shop/Apple/a{i}.jpg": jpeg(fruit("Apple", i)) for i in range(2)}
    photos["file:/shop/Kiwi/k0.jpg"] = jpeg(fruit("Kiwi", 7, size=(400, 300)))
    pixels = {p: decode_for_model(c, limits).pixels for p, c in photos.items()}
    now = datetime.now(timezone.utc)
    silver = [(p, p.split("/")[-2], f"h-{p}", 400, 300, "RGB", pixels[p], "silver-run", now)
              for p in photos]
    frame = spark.createDataFrame(
        [(p, f"h-{p}", p.split("/")[-2]) for p in photos]
        # a photo silver does not hold, and one whose silver image changed since gold
        + [("file:/studio/Apple/s.jpg", "h-s", "Apple"),
           ("file:/shop/Kiwi/k0.jpg", "h-stale", "Kiwi")],
        "path string, content_hash string, label string")
    views = ("mirror", "crop70")
    identity = build_payload("tflite", config.gold.weights, cache=lakehouse / "models").identity
    with pytest.raises(ConfigError, match="give gold's weights"):  # features of other weights
        view_maker(config, views, "mobilenet@sha256:another", "tflite")
    maker = view_maker(config, views, identity, "tflite")
    # No silver table yet: every photo without views.
    silver_table = table(spark, SILVER_IMAGES, str(lakehouse))
    assert {r["views"] for r in with_view_features(silver_table, maker, frame)
            .select("views").collect()} == {None}
    spark.createDataFrame(silver, SILVER_IMAGES.schema).write.format("delta").mode(
        "append").save(ensure_table(spark, SILVER_IMAGES, str(lakehouse)).location)
    rows = {(r["path"], r["content_hash"]): r for r in
            with_view_features(silver_table, maker, frame).collect()}
    engine = build_engine(maker.payload, 1)
    assert len(rows) == 5
    for path in photos:
        row = rows[path, f"h-{path}"]
        assert row["label"] == path.split("/")[-2]
        expected = featurize(engine, model_views(pixels[path], views), 1)
        np.testing.assert_allclose(np.array(row["views"]), expected, rtol=0, atol=1e-5)
    assert rows["file:/studio/Apple/s.jpg", "h-s"]["views"] is None
    assert rows["file:/shop/Kiwi/k0.jpg", "h-stale"]["views"] is None
    # A view is another picture: far from the photo's own features.
    own = featurize(engine, pixels_to_array(pixels["file:/shop/Kiwi/k0.jpg"])[None], 1)[0]
    kiwi = np.array(rows["file:/shop/Kiwi/k0.jpg", "h-file:/shop/Kiwi/k0.jpg"]["views"])
    assert np.abs(kiwi[1] - own).max() > 0.1


@pytest.mark.slow
def test_classify_answers_each_photo_as_gold_predictions_does(
        spark, lakehouse: Path, tmp_path: Path, imagenet, capsys) -> None:
    """Photos -> bronze, silver, gold (real MobileNetV2) -> train (with views averaged at
    prediction) -> predict; then make classify's program on the same files: gold's
    features within 1e-5, and the same answer as gold.predictions, field by field."""
    from common.config import load_config
    from gold.classify import PhotoClassifier
    from gold.classify import main as classify_main
    from tests.gold.helpers import bronze_silver, gold, gold_features
    from tests.gold.service_helpers import fruit, jpeg
    from tests.imagegen import write

    source = tmp_path / "photos"
    labels = {}
    for species in ("Apple", "Banana", "Kiwi"):
        for seed in range(10):  # "studio" and "phone" photos of each species
            write(source / f"{species} studio" / f"s{seed}.jpg", jpeg(fruit(species, seed)))
            write(source / f"{species} phone" / f"p{seed}.jpg",
                  jpeg(fruit(species, 100 + seed, size=(400, 300))))
        labels[f"{species} studio"] = (species, "studio")
        labels[f"{species} phone"] = (species, "phone")
    species_csv = tmp_path / "species.csv"
    species_csv.write_text("label,species,dataset\n" + "".join(
        f"{label},{species},{dataset}\n" for label, (species, dataset) in labels.items()))
    bronze_silver(source, lakehouse)
    assert gold(lakehouse) == 0
    base = ["--lakehouse", str(lakehouse), *OPTS]
    # view_weight 0.6: every answer depends on the view (Classifier.view_threshold > 1)
    assert train_main([*base, "--species-map", str(species_csv),
                       "--set", "classifier.view_sources=[phone]",
                       "--set", "classifier.view_weight=0.6"]) == 0
    assert predict_main(base) == 0
    meta = json.loads((lakehouse / "models" / "classifier" / "v0001" / "classifier.json")
                      .read_text())
    assert (meta["views"], meta["view_weight"]) == (["crop70"], 0.6)

    predicted = predictions(spark, lakehouse)
    stored = gold_features(spark, lakehouse)
    assert sorted(predicted) == sorted(stored) and len(stored) == 60
    capsys.readouterr()  # the jobs' summaries
    assert classify_main([str(source), "--lakehouse", str(lakehouse)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 60
    photos = PhotoClassifier(load_config("local", {"lakehouse": str(lakehouse)}))
    alone = 0
    for answer in answers:
        key = f"file:{answer['path']}"
        row = predicted[key]
        content = Path(answer["path"]).read_bytes()
        np.testing.assert_allclose(photos.features(content), np.array(stored[key].features),
                                   rtol=0, atol=1e-5)
        said = (answer, row)
        assert answer["species"] == row.species, said
        assert answer["probability"] == pytest.approx(row.probability, abs=2e-6), said
        assert answer["unknown"] == row.unknown, said
        # The same species with the same probabilities (their order is theirs: two within
        # 2e-6 of each other may swap, the features agreeing within 1e-5, not bit for bit)
        assert dict(answer["top"]) == pytest.approx(
            {t.species: t.probability for t in row.top}, abs=2e-6), said
        assert answer["label"] == row.closest_label, said
        assert answer["model_version"] == row.model_version == "v0001"
        own = photos.classifier.answers(photos.features(content)[None],
                                        np.full((1, 1, 1280), np.nan, np.float32))[0]
        alone += own["probability"] == answer["probability"]
    assert alone < 5  # the views changed the answers' probabilities
