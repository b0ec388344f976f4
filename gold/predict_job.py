"""Predict job: keep ``gold.predictions`` up to date with the serving classifier.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        gold/predict_job.py --lakehouse DIR

(``make predict`` runs exactly this; ``make pipeline`` runs it last once a model has
been trained.) One row per gold row: ``species``, ``probability``, ``top`` (the best
``classifier.top`` species with their probabilities), ``unknown``, ``closest_label`` and
``model_version``. For a version that averages views (``classifier.view_weight``), the
views of each photo whose answer depends on them are made from ``silver.images``' model
input of the same content and featurized by gold's engine with gold's weights: one more
inference per such photo and view. Incremental like every layer: new gold rows are
predicted, rows whose gold row left are removed, and when another version serves (a new
``make train``, or ``--promote``) every row is predicted again. A run killed at any point
leaves whole Delta commits only; the next run does what is left.
"""

from __future__ import annotations

import common  # noqa: F401 - first, before pyspark: see common/__init__.py

import logging
import sys
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.config import Config
from common.incremental import changes, delete_stale
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.lake import ensure_table, table, upstream
from common.layers import Layer
from common.runlog import Run
from gold.predict import (
    load_serving,
    serving_state,
    view_maker,
    with_answers,
    with_view_features,
)
from gold.tables import GOLD_FEATURES, GOLD_PREDICTIONS
from silver.tables import SILVER_IMAGES

log = logging.getLogger("predict")


def has_model(config: Config) -> bool:
    return bool(serving_state(config.lakehouse))


def predict_new(spark: SparkSession, config: Config, run: Run) -> None:
    classifier = load_serving(config.lakehouse)
    gold, _ = upstream(spark, GOLD_FEATURES, config.lakehouse, "run gold first").pinned()
    silver = table(spark, SILVER_IMAGES, config.lakehouse)
    maker = None  # the views' engine, checked before any table is touched
    if classifier.views and silver.exists():
        maker = view_maker(config, classifier.views, classifier.feature_model, classifier.engine)
    predictions = ensure_table(spark, GOLD_PREDICTIONS, config.lakehouse)
    # Rows of another model version are predicted again (a new model serves).
    outdated = predictions.delete(F.col("model_version") != classifier.version)
    todo = changes(spark, gold, [predictions])
    run.rows_deleted = outdated + delete_stale(todo)
    run.rows_in = todo.pending
    if todo.pending:
        now = datetime.now(timezone.utc)
        rows = with_view_features(silver, maker, todo.rows.select(
            "path", "label", "content_hash", "features"), classifier)
        rows = (rows.transform(with_answers(spark, classifier))
                .withColumn("run_id", F.lit(run.run_id))
                .withColumn("processed_at", F.lit(now).cast("timestamp"))
                .select(*GOLD_PREDICTIONS.schema.fieldNames()))
        fault_point("predict:before_commit")
        predictions.append(rows, run.run_id)
    run.rows_out = run.rows_in
    run.details.update(model_version=classifier.version, repredicted=outdated)
    log.info("predictions of %s: %d rows predicted, %d removed", classifier.version,
             run.rows_in, run.rows_deleted)


def _pipeline_body(config: Config):  # noqa: ANN202 - the body, or None
    """The pipeline's last step once a classifier is trained; skipped before."""
    if has_model(config):
        return predict_new
    log.info("predict skipped: no classifier trained in this lakehouse yet (make train)")
    return None


LAYER = Layer("predict", body=lambda config, options: _pipeline_body(config))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Predict the species of gold rows into gold.predictions.")
    parsed = parse_or_exit(parser, argv, config_from_args)
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    return run_job("predict", config, predict_new, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
