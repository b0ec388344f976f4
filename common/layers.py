"""The layers of ``make pipeline``, registered by name: ``common`` never imports a layer.

Each layer's job module declares one :class:`Layer` (``LAYER = Layer(...)``): its job
name (the lock, the ``ops.runs`` row, the summary line), the body the pipeline runs for
it, and the optional hooks below. :data:`PIPELINE` lists those modules in run order;
``common/pipeline.py`` imports them by name when it runs. Adding a layer to the pipeline
is its package plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from common.config import Config

# The job modules of the pipeline, in the order their layers run.
PIPELINE = (
    "bronze.job",
    "silver.job",
    "gold.job",
    "gold.pca_job",
    "gold.predict_job",
)

Body = Callable[..., None]  # (spark, config, run) -> None, as run_job takes it


@dataclass(frozen=True)
class PipelineOptions:
    """What ``make pipeline``'s own flags ask of the layers."""

    sync_deletes: bool = False
    pca: bool = True


@dataclass(frozen=True)
class Layer:
    """One pipeline layer: ``body(config, options)`` gives the job's body, or None when
    the layer has nothing to do in this run (it is then skipped, with the reason it logs);
    ``check(config)`` validates what the layer needs before any layer runs and returns the
    config (fail fast); ``details(config)`` starts the run's ``ops.runs`` details."""

    job: str
    body: Callable[[Config, PipelineOptions], Body | None]
    check: Callable[[Config], Config] | None = None
    details: Callable[[Config], dict] | None = None


def layer_packages() -> list[str]:
    """The packages of the :data:`PIPELINE` layers, in order (``bronze``, ``silver``,
    ``gold``): where :func:`common.tables.all_tables` looks for their tables."""
    return list(dict.fromkeys(name.split(".")[0] for name in PIPELINE))


def pipeline_layers() -> list[Layer]:
    """The :data:`PIPELINE` layers, in order."""
    layers = []
    for name in PIPELINE:
        layer = getattr(importlib.import_module(name), "LAYER", None)
        if not isinstance(layer, Layer):
            raise TypeError(f"{name} is listed in common.layers.PIPELINE but declares no "
                            "LAYER = Layer(...)")
        layers.append(layer)
    return layers
