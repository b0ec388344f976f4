"""Train job: a species classifier on ``gold.image_features``, versioned and evaluated.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        gold/train_job.py --lakehouse DIR [--eval-root PATH ...] [--promote VERSION|latest]

(``make train`` runs exactly this.) Gold rows whose label the species map
(``classifier.species_map``, default conf/species.csv) maps to a species are the data;
a label it lacks is named in a warning and its rows are left out. Rows under an
``--eval-root`` (a path prefix, repeatable) are held out for evaluation only; without
one, 20% of the rows (by a hash of the path) are, with a warning that near-identical
frames of one Fruits-360 video then sit on both sides. Of the rest, a share
(``classifier.calibration_share``) calibrates the "unknown" thresholds and the others
train a multinomial logistic regression with Spark ML, each source (the map's
``dataset`` column) weighed equally and each species equally within it.

Each run writes a new version ``vNNNN``: ``<lakehouse>/models/classifier/vNNNN/``
(params.npz, classifier.json), a row in ``gold.classifier_models``, and a report in
``<lakehouse>/reports/classifier/vNNNN/`` (metrics.json, confusion.png, accuracy.png).
The newest version serves unless ``--promote VERSION`` pinned one (``--promote latest``
unpins). No feature row is collected to the driver: only counts, quantiles and the
per-label mean vectors are.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import functools
import json
import logging
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

import numpy as np
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import Normalizer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import Config, ConfigError
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.lake import ensure_table, table, upstream
from common.runlog import Run
from common.spark import local_frame
from common.storage import local_path, storage_of
from gold.classifier import Classifier, SpeciesMapError, load_species_map, unit_rows
from gold.predict import (
    models_root,
    report_root,
    serving_state,
    versions,
    view_maker,
    with_answers,
    with_scores,
    with_view_features,
    write_serving,
)
from gold.settings import ClassifierSettings
from gold.tables import CLASSIFIER_MODELS, GOLD_FEATURES
from silver.tables import SILVER_IMAGES

log = logging.getLogger("train")

HOLDOUT_SHARE = 0.2  # without --eval-root
DEFAULT_SOURCE = "default"
FIT_SHIFT = 1e-4  # added to every feature the fit sees (dense blocks): see fit_logistic()
THRESHOLD_MARGIN = 1e-4  # the "unknown" thresholds sit this far under their quantile


def train(spark: SparkSession, config: Config, run: Run, *, eval_roots: list[str]) -> None:
    if not storage_of(config.lakehouse).direct:
        raise ConfigError("make train writes its model versions to a local lakehouse; "
                          f"{config.lakehouse} is an object store")
    try:
        species_map = load_species_map(config.species_map_path)
    except SpeciesMapError as exc:
        raise ConfigError(str(exc)) from exc
    gold, gold_version = upstream(spark, GOLD_FEATURES, config.lakehouse,
                                  "run the pipeline (make pipeline SOURCE=...) first").pinned()
    feature_model = _single_value(gold, "model")
    mapping = local_frame(spark, [(label, e.species, e.source or DEFAULT_SOURCE)
                                  for label, e in species_map.items()],
                          T.StructType([T.StructField("label", T.StringType()),
                                        T.StructField("species", T.StringType()),
                                        T.StructField("source", T.StringType())]))
    rows = gold.select("path", "label", "content_hash", "features").join(
        F.broadcast(mapping), "label", "left")
    unmapped = rows.where(F.col("species").isNull()).groupBy("label").count().collect()
    if unmapped:
        names = ", ".join(f"{r['label']!r} ({r['count']} rows)" for r in
                          sorted(unmapped, key=lambda r: r["label"])[:20])
        log.warning("%d label(s) are not in the species map %s and are left out of "
                    "training: %s%s. Add them to the map to use them.", len(unmapped),
                    config.species_map_path, names, " ..." if len(unmapped) > 20 else "")
    mapped = rows.where(F.col("species").isNotNull())
    bucket = F.abs(F.xxhash64("path")) % 1000
    if eval_roots:
        held_out = reduce(lambda a, b: a | b, [F.col("path").startswith(r) for r in eval_roots])
        eval_source = reduce(lambda acc, r: acc.when(F.col("path").startswith(r), F.lit(r)),
                             eval_roots[1:], F.when(F.col("path").startswith(eval_roots[0]),
                                                    F.lit(eval_roots[0])))
    else:
        log.warning("no --eval-root: %d%% of the rows, chosen by a hash of the path, are held "
                    "out for evaluation. Near-identical frames of one Fruits-360 video fall on "
                    "both sides of such a split, so its figures are optimistic; hold out a "
                    "folder of other photos with --eval-root PATH.", 100 * HOLDOUT_SHARE)
        held_out = bucket < int(1000 * HOLDOUT_SHARE)
        eval_source = F.col("source")
    evaluation = mapped.where(held_out).withColumn("source", eval_source)
    if eval_roots:
        found = {r["source"]: r["count"] for r in evaluation.groupBy("source").count().collect()}
        empty = [r for r in eval_roots if not found.get(r)]
        if empty:
            example = mapped.select("path").limit(1).collect()
            raise ConfigError(
                f"--eval-root {', '.join(empty)}: no gold row (of a mapped label) has a path "
                "under it, so nothing would be held out; give the folder the pipeline read"
                + (f" (gold's paths look like {example[0]['path']})" if example else ""))
    training = mapped.where(~held_out)
    calibrating = bucket >= 1000 - int(1000 * config.classifier.calibration_share)
    fit_rows = training.where(~calibrating).select("label", "species", "source", "features")
    c = config.classifier
    engine = _gold_engine(spark, config)
    # The views (classifier.views) of each fitted photo of classifier.view_sources are
    # trained on; when averaged at prediction (view_weight), the evaluation photos' views
    # are made too, so the figures are those of the answers.
    silver = table(spark, SILVER_IMAGES, config.lakehouse)
    maker = view_maker(config, tuple(c.views), feature_model, engine) if c.views and (
        silver.exists()) else None
    if c.views and maker is None:
        log.warning("no silver.images: training and answering without the views %s",
                    list(c.views))
    averaged = tuple(c.views) if maker is not None and c.view_weight > 0 else ()
    if maker is not None and c.view_sources:
        photos = training.where(~calibrating & F.col("source").isin(list(c.view_sources)))
        view_rows = (with_view_features(silver, maker, photos)
                     .select("label", "species", "source",
                             F.explode("views").alias("features")))
        log.info("adding %d view(s) (%s) of each training photo of %s, computed by %s",
                 len(c.views), ", ".join(c.views), ", ".join(c.view_sources), engine)
        fit_rows = fit_rows.unionByName(view_rows)
    prepared_rows = with_prepared(fit_rows).cache()  # the views are computed once
    fit_rows = prepared_rows

    counts = fit_rows.groupBy("source", "species").count().collect()
    total = sum(r["count"] for r in counts)
    if total < config.classifier.min_rows or len({r["species"] for r in counts}) < 2:
        raise ConfigError(
            f"{total} training rows of {len({r['species'] for r in counts})} species: "
            f"training needs at least {config.classifier.min_rows} rows "
            "(classifier.min_rows) of two species or more. Run the pipeline on labelled "
            "photos whose labels are in the species map.")
    species = sorted({r["species"] for r in counts})
    index = {s: i for i, s in enumerate(species)}
    weights = _weights(counts, balance=config.classifier.source_balance)
    weight_of = F.create_map(*[F.lit(x) for (src, sp), w in weights.items()
                               for x in (f"{src}\u0000{sp}", w)])
    index_of = F.create_map(*[F.lit(x) for s, i in index.items() for x in (s, float(i))])
    fit_rows = fit_rows.select(
        "label", "vector", "source",
        index_of[F.col("species")].alias("target"),
        weight_of[F.concat_ws("\u0000", "source", "species")].alias("weight"),
    )
    parts = fit_rows.rdd.getNumPartitions()
    # One partition per core: every L-BFGS iteration is a Spark job over these rows (the
    # bench lakehouse's rows come in 6 partitions; the gain there is within the noise).
    fit_rows = fit_rows.repartition(spark.sparkContext.defaultParallelism).cache()
    log.info("fit rows: %d partitions -> %d", parts, fit_rows.rdd.getNumPartitions())

    hyper = {"model": "multinomial logistic regression (Spark ML)",
             "features": "sqrt, then L2-normalised", "reg_param": c.reg_param,
             "views": list(c.views), "view_sources": list(c.view_sources),
             "view_weight": c.view_weight if averaged else 0.0,
             "elastic_net": c.elastic_net, "max_iter": c.max_iter,
             "source_balance": c.source_balance, "calibration_share": c.calibration_share,
             "unknown_false_rate": c.unknown_false_rate}
    log.info("training on %d rows, %d species, %d sources (%s)", total, len(species),
             len({r["source"] for r in counts}), json.dumps(hyper))
    coefficients, intercepts = fit_logistic(fit_rows, c)
    centroid_rows = (fit_rows.groupBy("label").agg(Summarizer.mean(F.col("vector")).alias("mean"))
                     .collect())  # one 1280-vector per label
    labels = sorted(r["label"] for r in centroid_rows)
    by_label = {r["label"]: r["mean"].toArray() for r in centroid_rows}
    label_species = {label: species_map[label].species for label in labels}
    fit_rows.unpersist()
    prepared_rows.unpersist()

    number = int(versions(config.lakehouse)[-1][1:]) + 1 if versions(config.lakehouse) else 1
    version = f"v{number:04d}"
    draft = Classifier(
        version=version, species=tuple(species),
        coefficients=coefficients,
        intercepts=intercepts,
        labels=tuple(labels),
        label_species=np.array([index[label_species[lab]] for lab in labels], dtype=np.int32),
        centroids=unit_rows(np.stack([by_label[lab] for lab in labels])),
        min_probability=0.0, min_similarity=-1.0, feature_model=feature_model,
        engine=engine, top=c.top, views=averaged, view_weight=c.view_weight if averaged else 0.0,
    )

    # The "unknown" scores are the photo's own: the calibration needs no views.
    classifier = _calibrated(spark, draft, training.where(calibrating), c.unknown_false_rate)
    if averaged:
        evaluation = with_view_features(silver, maker, evaluation, classifier)
    metrics = evaluate(spark, classifier, evaluation)
    metrics["calibration"] = {"min_probability": classifier.min_probability,
                              "min_similarity": classifier.min_similarity}
    rows_per_source: dict[str, int] = {}
    for r in counts:
        rows_per_source[r["source"]] = rows_per_source.get(r["source"], 0) + r["count"]

    folder = local_path(models_root(config.lakehouse)) / version
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch, version)
        classifier.save(work)
        shutil.copytree(work, folder)  # classifier.json, the completion mark, copied too
    fault_point("train:after_model_save")
    report = write_report(config, version, metrics, hyper, rows_per_source)
    pinned = serving_state(config.lakehouse).get("pinned", False)
    serving = serving_state(config.lakehouse)["version"] if pinned else version
    _record(spark, config, run, classifier, gold_version, rows_per_source, hyper, metrics)
    _set_serving(spark, config, serving, pinned=pinned)
    run.rows_in = total
    run.rows_out = 1
    run.details.update(version=version, serving=serving, report=report,
                       **{f"top1[{k}]": v["top1"] for k, v in metrics["sources"].items()})
    for name, m in metrics["sources"].items():
        log.info("%s on %s: top-1 %.1f%%, top-3 %.1f%%, flagged unknown %.1f%% (%d photos)",
                 version, name, 100 * m["top1"], 100 * m["top3"], 100 * m["unknown"], m["rows"])
    log.info("model %s in %s; report in %s; serving: %s", version, folder, report, serving)


def fit_logistic(rows: DataFrame, c: ClassifierSettings) -> tuple[np.ndarray, np.ndarray]:
    """Spark ML's multinomial logistic regression on ``rows`` (``vector``, ``target``,
    ``weight``) -> (coefficients (classes, features), intercepts (classes,)) for the
    features as given.

    The fit sees every feature plus :data:`FIT_SHIFT`: a third of MobileNetV2's features
    are 0, which makes Spark ML stack the rows as sparse blocks, about 7x slower to
    multiply (docs/design.md, "Dense blocks"). With an intercept the shift changes no
    prediction: ``W(x + s) + b = Wx + (b + s * row sums of W)``, folded back here.
    """
    shifted = array_to_vector(F.transform(vector_to_array("vector"), lambda x: x + FIT_SHIFT))
    lr = LogisticRegression(featuresCol="vector", labelCol="target", weightCol="weight",
                            family="multinomial", regParam=c.reg_param,
                            elasticNetParam=c.elastic_net, maxIter=c.max_iter,
                            # the prepared rows have unit length: no per-feature scaling
                            standardization=False,
                            # rows stacked 16 MB at a time: fewer, larger matrix products
                            maxBlockSizeInMB=16.0)
    fitted = lr.fit(rows.withColumn("vector", shifted))
    log.info("fitted in %d iterations", fitted.summary.totalIterations)
    coefficients = fitted.coefficientMatrix.toArray().astype(np.float64)
    intercepts = (fitted.interceptVector.toArray().astype(np.float64)
                  + FIT_SHIFT * coefficients.sum(axis=1))
    return coefficients, intercepts


def with_prepared(frame: DataFrame, column: str = "features", out: str = "vector"
                  ) -> DataFrame:
    """:func:`gold.classifier.prepare` in Spark: the square root of each feature (a SQL
    ``transform``), then the row scaled to unit length by Spark ML's ``Normalizer``.
    (One SQL expression for both would evaluate the norm once per element: 1280 x the
    work, minutes instead of seconds.)"""
    roots = F.transform(column, lambda x: F.sqrt(F.greatest(x.cast("double"), F.lit(0.0))))
    frame = frame.withColumn("_roots", array_to_vector(roots))
    return Normalizer(inputCol="_roots", outputCol=out, p=2.0).transform(frame).drop("_roots")


def _single_value(frame: DataFrame, column: str) -> str:
    values = [r[0] for r in frame.select(column).distinct().limit(2).collect()]
    if len(values) != 1:
        raise ConfigError(f"gold.image_features holds {len(values)} feature models; "
                          "rebuild gold with one (make gold JOB_ARGS=--rebuild)")
    return values[0]


def _gold_engine(spark: SparkSession, config: Config) -> str:
    """The engine of gold's last successful run (ops.runs), else the profile's."""
    from common.tables import OPS_RUNS

    runs = table(spark, OPS_RUNS, config.lakehouse)
    if runs.exists():
        last = (runs.read()
                .where((F.col("job") == "gold") & (F.col("status") == "succeeded"))
                .orderBy(F.col("started_at").desc()).select("details").limit(1).collect())
        if last:
            engine = json.loads(last[0]["details"] or "{}").get("engine")
            if engine:
                return engine
    return config.gold.engine


def _weights(counts: list, *, balance: bool) -> dict[tuple[str, str], float]:
    """Weight per (source, species): with ``balance`` every source carries the same total
    weight and, within it, every species; the weights average 1 over the rows."""
    total = sum(r["count"] for r in counts)
    if not balance:
        return {(r["source"], r["species"]): 1.0 for r in counts}
    sources = {r["source"] for r in counts}
    per_source = {s: sum(1 for r in counts if r["source"] == s) for s in sources}
    return {(r["source"], r["species"]):
            total / (len(sources) * per_source[r["source"]] * r["count"]) for r in counts}


def _calibrated(spark: SparkSession, draft: Classifier, rows: DataFrame, rate: float
                ) -> Classifier:
    """Thresholds that flag about ``rate`` of the held-out known photos of each source as
    unknown (half of it by each score); the lowest over the sources, so no source is
    flagged more."""
    scored = rows.transform(with_scores(spark, draft)).cache()
    sources = [r[0] for r in scored.select("source").distinct().collect()]
    if not sources:
        raise ConfigError("no calibration rows: raise classifier.calibration_share or add photos")
    probability = min(scored.where(F.col("source") == s).approxQuantile(
        "probability", [rate / 2], 0.001)[0] for s in sources)
    similarity = min(scored.where(F.col("source") == s).approxQuantile(
        "similarity", [rate / 2], 0.001)[0] for s in sources)
    scored.unpersist()
    from dataclasses import replace

    # A quantile is one calibration photo's own score: a threshold just under it keeps
    # that photo on the same side whichever engine's features (within 1e-5) score it.
    return replace(draft, min_probability=float(probability) - THRESHOLD_MARGIN,
                   min_similarity=float(similarity) - THRESHOLD_MARGIN)


def evaluate(spark: SparkSession, classifier: Classifier, rows: DataFrame) -> dict:
    """Per evaluation source: rows, top-1, top-3, share flagged unknown; per species
    precision and recall; the confusion counts of the most confused species."""
    views = ["views"] if "views" in rows.columns else []
    answered = rows.select("path", "source", F.col("species").alias("truth"), "features",
                           *views).transform(with_answers(spark, classifier))
    in_top = F.exists("top", lambda t: t["species"] == F.col("truth"))
    grouped = answered.groupBy("source", "truth", "species").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(in_top.cast("int")).alias("in_top"),
        F.sum(F.col("unknown").cast("int")).alias("unknown"),
    ).collect()
    sources: dict[str, dict] = {}
    per_species: dict[str, dict[str, int]] = {}
    confusion: dict[tuple[str, str], int] = {}
    for r in grouped:
        s = sources.setdefault(r["source"], {"rows": 0, "top1": 0, "top3": 0, "unknown": 0})
        s["rows"] += r["n"]
        s["top1"] += r["n"] if r["truth"] == r["species"] else 0
        s["top3"] += r["in_top"]
        s["unknown"] += r["unknown"]
        for name, key in ((r["truth"], "support"), (r["species"], "predicted")):
            per_species.setdefault(name, {"support": 0, "predicted": 0, "correct": 0})[key] += r["n"]
        if r["truth"] == r["species"]:
            per_species[r["truth"]]["correct"] += r["n"]
        confusion[(r["truth"], r["species"])] = confusion.get((r["truth"], r["species"]), 0) + r["n"]
    for s in sources.values():
        for key in ("top1", "top3", "unknown"):
            s[key] = round(s[key] / s["rows"], 4) if s["rows"] else None
    species_metrics = {
        name: {"support": v["support"],
               "precision": round(v["correct"] / v["predicted"], 4) if v["predicted"] else None,
               "recall": round(v["correct"] / v["support"], 4) if v["support"] else None}
        for name, v in sorted(per_species.items())}
    return {"sources": dict(sorted(sources.items())), "species": species_metrics,
            "confusion": [[t, p, n] for (t, p), n in sorted(confusion.items())]}


def write_report(config: Config, version: str, metrics: dict, hyper: dict,
                 rows_per_source: dict) -> str:
    """metrics.json, accuracy.png (per source) and confusion.png (the 20 species most
    often confused, row-normalised) in the version's report folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = local_path(report_root(config.lakehouse, version))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(
        {"version": version, "hyper_parameters": hyper, "rows_per_source": rows_per_source,
         **metrics}, indent=2), encoding="utf-8")
    sources = metrics["sources"]
    if sources:
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(sources) * 3))
        names = list(sources)
        y = np.arange(len(names))
        for offset, key in ((-0.25, "top1"), (0.0, "top3"), (0.25, "unknown")):
            ax.barh(y + offset, [100 * (sources[n][key] or 0) for n in names], height=0.25,
                    label=key)
        ax.set_yticks(y, [Path(n).name or n for n in names])
        ax.set_xlabel("% of the source's photos")
        ax.set_xlim(0, 100)
        ax.legend(loc="lower right")
        ax.set_title(f"classifier {version}: top-1, top-3, flagged unknown")
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=110)
        plt.close(fig)
    wrong: dict[str, int] = {}
    for truth, predicted, n in metrics["confusion"]:
        if truth != predicted:
            wrong[truth] = wrong.get(truth, 0) + n
            wrong[predicted] = wrong.get(predicted, 0) + n
    support: dict[str, int] = {}
    for truth, _, n in metrics["confusion"]:
        support[truth] = support.get(truth, 0) + n
    # the most confused species first, then (when fewer than 20 are) the most frequent
    top = sorted(set(wrong) | set(support),
                 key=lambda s: (-wrong.get(s, 0), -support.get(s, 0), s))[:20]
    if top:
        grid = np.zeros((len(top), len(top)))
        for truth, predicted, n in metrics["confusion"]:
            if truth in top and predicted in top:
                grid[top.index(truth), top.index(predicted)] += n
        grid = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(9, 8))
        image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(top)), top, rotation=90, fontsize=7)
        ax.set_yticks(range(len(top)), top, fontsize=7)
        ax.set_xlabel("predicted species")
        ax.set_ylabel("true species")
        ax.set_title(f"classifier {version}: the {len(top)} most confused species "
                     "(share of each true species)")
        fig.colorbar(image, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(out / "confusion.png", dpi=110)
        plt.close(fig)
    return str(out)


def _record(spark: SparkSession, config: Config, run: Run, classifier: Classifier,
            gold_version: int, rows_per_source: dict, hyper: dict, metrics: dict) -> None:
    models = ensure_table(spark, CLASSIFIER_MODELS, config.lakehouse)
    row = (classifier.version, datetime.now(timezone.utc), gold_version,
           classifier.feature_model, rows_per_source, list(classifier.species),
           json.dumps(hyper, sort_keys=True),
           json.dumps({"sources": metrics["sources"], "calibration": metrics["calibration"]},
                      sort_keys=True),
           classifier.min_probability, False, run.run_id)
    models.append(local_frame(spark, [row], CLASSIFIER_MODELS.schema))


def _set_serving(spark: SparkSession, config: Config, version: str, *, pinned: bool) -> None:
    """serving.json first (what classify and the service read), then the table's flag."""
    write_serving(config.lakehouse, version, pinned=pinned)
    models = table(spark, CLASSIFIER_MODELS, config.lakehouse)
    if models.exists():
        models.update({"serving": F.col("version") == F.lit(version)})


def promote(spark: SparkSession, config: Config, run: Run, *, version: str) -> None:
    known = versions(config.lakehouse)
    if not known:
        raise ConfigError(f"no trained classifier in {config.lakehouse}: run make train first")
    if version == "latest":
        _set_serving(spark, config, known[-1], pinned=False)
        run.details.update(serving=known[-1], pinned=False)
    elif version in known:
        _set_serving(spark, config, version, pinned=True)
        run.details.update(serving=version, pinned=True)
    else:
        raise ConfigError(f"no classifier version {version!r}; known: {', '.join(known)}")
    log.info("serving classifier: %s", run.details["serving"])


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Train a species classifier on gold.image_features (Spark ML).")
    parser.add_argument("--eval-root", action="append", default=[], metavar="PATH",
                        help="hold out gold rows under PATH for evaluation (repeatable)")
    parser.add_argument("--promote", metavar="VERSION",
                        help="serve VERSION (vNNNN) instead of the newest; 'latest' unpins")
    parser.add_argument("--species-map", help="label,species CSV (default conf/species.csv)")

    def build(args):  # noqa: ANN001, ANN202
        if args.species_map:
            args.overrides.append(f"classifier.species_map={args.species_map}")
        args.eval_root = [_absolute(r) for r in args.eval_root]
        return config_from_args(args)

    parsed = parse_or_exit(parser, argv, build)
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    if args.promote:
        body = functools.partial(promote, version=args.promote)
    else:
        body = functools.partial(train, eval_roots=args.eval_root)
    return run_job("train", config, body, log_level=args.log_level)


def _absolute(root: str) -> str:
    """A local eval root as the absolute path prefix gold's rows carry (``file:`` URIs
    as bronze writes them)."""
    if root.startswith("file:"):
        return root  # already in the form of gold's paths
    storage = storage_of(root)
    return storage.uri(storage.absolute(root))


if __name__ == "__main__":
    sys.exit(main())
