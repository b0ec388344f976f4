"""PCA job: reduce the gold features into ``gold.image_features_pca``, with a report.

    spark-submit $(python -m common.spark --submit-args --env local) \\
        gold/pca_job.py --lakehouse DIR [--refit] [--k K] [--variance 0.95] [--env local]

(``make pca`` runs exactly this.) The first run fits a model on ``gold.image_features``
(k = the smallest number of components keeping ``pca.variance`` of the variance, or
``--k``); later runs project only new or changed gold rows with the current model and
drop rows whose gold row left. ``--refit`` fits a new model version and rewrites every
row with it. Models are versioned under ``<lakehouse>/models/pca/vNNNN/`` (the Spark ML
pipeline, then ``metadata.json``: k, explained variance per component, the gold version
fitted on, the time). The report (two PNGs and ``summary.json``) goes to
``<lakehouse>/reports/pca/``. Fitting aggregates a covariance matrix on the executors;
no feature row is collected to the driver (the scatter plot takes a bounded sample).
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
from pathlib import Path

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.config import Config, ConfigError
from common.incremental import changes, delete_stale
from common.lake import ensure_table, upstream
from common.jobs import base_parser, config_from_args, fault_point, parse_or_exit, run_job
from common.layers import Layer
from common.runlog import Run
from common.storage import hadoop_fs, join_path, read_text, storage_of, write_text
from gold.pca import (
    PcaFit,
    choose_k,
    explained_variance,
    fit_pipeline,
    max_components,
    to_pca_rows,
    with_feature_vector,
)
from gold.tables import GOLD_FEATURES, GOLD_PCA

log = logging.getLogger("pca")


def models_root(config: Config) -> str:
    return join_path(config.lakehouse, "models", "pca")


def report_root(config: Config) -> str:
    return join_path(config.lakehouse, "reports", "pca")


def latest_fit(spark: SparkSession, config: Config) -> PcaFit | None:
    """The newest complete model version (its metadata.json is written last)."""
    fs, root = hadoop_fs(spark, models_root(config))
    if not fs.exists(root):
        return None
    versions = sorted(s.getPath().getName() for s in fs.listStatus(root) if s.isDirectory())
    for version in reversed(versions):
        text = read_text(spark, join_path(models_root(config), version, "metadata.json"))
        if text:
            return PcaFit.from_json(text)
    return None


def reduce_features(spark: SparkSession, config: Config, run: Run, *, refit: bool,
                    optional: bool = False) -> None:
    """Project gold's rows with the current PCA version (fitting one first if there is
    none or ``refit``). Too few rows to fit: exit 2, or with ``optional`` (the pipeline)
    a warning and a run that wrote nothing, so a small first run does not read as failed.
    """
    gold, gold_version = upstream(spark, GOLD_FEATURES, config.lakehouse,
                                  "run gold first").pinned()
    rows = gold.count()
    current = latest_fit(spark, config)
    if refit or current is None:
        if rows < max(config.pca.min_rows, 2) and optional:
            log.warning("PCA skipped: gold.image_features has %d rows, fitting needs %d "
                        "(pca.min_rows); it runs once there are enough", rows,
                        config.pca.min_rows)
            run.details["skipped"] = f"{rows} rows < pca.min_rows {config.pca.min_rows}"
            return
        if rows < max(config.pca.min_rows, 2):
            raise ConfigError(
                f"gold.image_features has {rows} rows; fitting a PCA needs at least "
                f"{config.pca.min_rows} (pca.min_rows). Nothing was written."
            )
        current = _fit(spark, config, gold, gold_version, rows, previous=current)
        run.details["fitted"] = current.version
    model = PipelineModel.load(join_path(models_root(config), current.version, "model"))
    target = ensure_table(spark, GOLD_PCA, config.lakehouse)
    # Rows of another model version (a refit, possibly interrupted) are made again.
    outdated = target.delete(F.col("pca_version") != current.version)
    todo = changes(spark, gold, [target])
    run.rows_deleted = outdated + delete_stale(todo)
    work, run.rows_in = todo.rows, todo.pending
    if run.rows_in:
        fault_point("pca:before_commit")
        now = datetime.now(timezone.utc)
        target.append(work.transform(to_pca_rows(model, current.version, run.run_id, now)),
                      run.run_id)
    run.rows_out = run.rows_in
    run.details.update(
        pca_version=current.version, k=current.k,
        variance_kept=round(current.variance_kept, 4), report=report_root(config),
    )
    log.info("PCA %s (k=%d, %.1f%% variance): %d rows projected, %d removed; report in %s",
             current.version, current.k, 100 * current.variance_kept, run.rows_in,
             run.rows_deleted, report_root(config))


def _fit(
    spark: SparkSession, config: Config, gold, gold_version: int, rows: int,  # noqa: ANN001
    previous: PcaFit | None,
) -> PcaFit:
    vectors = with_feature_vector(gold).cache()
    full = fit_pipeline(vectors, max_components(rows))
    explained = explained_variance(full)
    k = choose_k(explained, config.pca.variance, config.pca.k)
    model = full if k == len(explained) else fit_pipeline(vectors, k)
    vectors.unpersist()
    number = int(previous.version[1:]) + 1 if previous else 1
    fit = PcaFit(
        version=f"v{number:04d}",
        k=k,
        variance_target=config.pca.variance,
        variance_kept=float(np.sum(explained[:k])),
        explained_variance=[float(v) for v in explained],
        gold_version=gold_version,
        rows=rows,
        fitted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    folder = join_path(models_root(config), fit.version)
    model.write().overwrite().save(join_path(folder, "model"))
    fault_point("pca:after_model_save")
    write_text(spark, join_path(folder, "metadata.json"), fit.to_json())
    log.info("fitted PCA %s on %d rows: k=%d keeps %.2f%% of the variance",
             fit.version, rows, k, 100 * fit.variance_kept)
    write_report(spark, config, fit, model, gold)
    return fit


def write_report(
    spark: SparkSession, config: Config, fit: PcaFit, model: PipelineModel, gold  # noqa: ANN001
) -> None:
    """Two PNGs (cumulative variance with k; PC1 x PC2 by label) and summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fraction = min(1.0, 1.2 * config.pca.plot_sample / max(fit.rows, 1))
    sample = (
        model.transform(with_feature_vector(gold.sample(fraction=fraction, seed=7)))
        .select("label", "reduced")
        .limit(config.pca.plot_sample)
        .collect()
    )
    out = Path(tempfile.mkdtemp(prefix="pca-report-"))
    cumulative = np.cumsum(fit.explained_variance)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(np.arange(1, len(cumulative) + 1), 100 * cumulative, color="tab:blue")
    ax.axhline(100 * fit.variance_target, color="grey", linestyle="--", linewidth=1,
               label=f"target {100 * fit.variance_target:.0f}%")
    ax.axvline(fit.k, color="tab:red", linewidth=1,
               label=f"k = {fit.k} ({100 * fit.variance_kept:.1f}% kept)")
    ax.set_xscale("log")
    ax.set_xlabel("number of components (log scale)")
    ax.set_ylabel("cumulative explained variance (%)")
    ax.set_title(f"PCA {fit.version} of gold.image_features ({fit.rows} images)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "explained_variance.png", dpi=110)
    plt.close(fig)

    labels = [r.label for r in sample]
    points = np.array([r.reduced.toArray()[:2] for r in sample]) if sample else np.zeros((0, 2))
    if points.shape[1] < 2:
        points = np.column_stack([points[:, 0], np.zeros(len(points))]) if len(points) else points
    top = [lab for lab, _ in _most_common(labels, 15)]
    fig, ax = plt.subplots(figsize=(9, 6))
    others = [i for i, lab in enumerate(labels) if lab not in top]
    if others:
        ax.scatter(points[others, 0], points[others, 1], s=6, color="lightgrey",
                   label=f"{len(set(labels) - set(top))} other labels")
    cmap = plt.get_cmap("tab20")
    for index, label in enumerate(top):
        chosen = [i for i, lab in enumerate(labels) if lab == label]
        ax.scatter(points[chosen, 0], points[chosen, 1], s=10, color=cmap(index % 20), label=label)
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title(f"First two components, {len(labels)} sampled images, {len(set(labels))} labels")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(out / "scatter_pc1_pc2.png", dpi=110)
    plt.close(fig)

    summary = {
        "version": fit.version, "k": fit.k, "variance_target": fit.variance_target,
        "variance_kept": fit.variance_kept, "rows": fit.rows, "gold_version": fit.gold_version,
        "fitted_at": fit.fitted_at, "plotted_sample": len(labels),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _publish(spark, out, report_root(config))
    shutil.rmtree(out, ignore_errors=True)


def _most_common(labels: list[str], n: int) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _publish(spark: SparkSession, folder: Path, target: str) -> None:
    """Copy the report files to ``target`` (a local folder or an object store)."""
    storage_of(target).publish(spark, folder, target)


LAYER = Layer("pca", body=lambda config, options: functools.partial(
    reduce_features, refit=False, optional=True) if options.pca else None)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("Reduce gold features with PCA into gold.image_features_pca.")
    parser.add_argument("--refit", action="store_true", help="fit a new model, rewrite all rows")
    parser.add_argument("--k", type=int, help="fixed number of components (else by variance)")
    parser.add_argument("--variance", type=float, help="share of variance to keep (0-1]")

    def build(args):  # noqa: ANN001, ANN202
        if args.k is not None:
            args.overrides.append(f"pca.k={args.k}")
        if args.variance is not None:
            args.overrides.append(f"pca.variance={args.variance}")
        return config_from_args(args)

    parsed = parse_or_exit(parser, argv, build)
    if isinstance(parsed, int):
        return parsed
    args, config = parsed
    return run_job("pca", config, functools.partial(reduce_features, refit=args.refit),
                   log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
