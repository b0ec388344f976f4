"""Gold's settings (the ``gold:``, ``pca:``, ``classifier:`` and ``serve:`` sections of a
profile; ``conf/base.yaml`` says what each means) and their rules, next to the code that
uses them.

``common.config`` finds these classes by name (``common.config.SECTIONS``) and runs
each one's ``check`` when a profile loads, so a wrong value fails before any
table is touched. ``auto`` and 0 stay as given here; a gold run resolves them once
(``gold.job``) into a copy that it uses and records in ``ops.runs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.config import ConfigError
from common.storage import storage_of
from gold.model import ENGINE_KINDS

if TYPE_CHECKING:
    from common.config import Config

# The inference engines: those of the registry (gold.model.ENGINE_KINDS).
ENGINES = tuple(sorted(ENGINE_KINDS))
# Who reads silver's images for gold (gold/silver_files.py): the Python workers straight
# from silver's files (local lakehouses), Spark's JVM, or auto (workers where local).
IMAGE_READERS = ("auto", "workers", "spark")
# Who writes gold's Parquet files (gold/writer.py): the Python workers that computed the
# features (local lakehouses; the driver commits the files), Spark's JVM, or auto.
WRITERS = ("auto", "workers", "spark")


@dataclass(frozen=True)
class GoldSettings:
    weights: str
    engine: str
    batch_size: int
    arrow_batch_size: int
    inference_threads: int
    partition_bytes: int
    image_reader: str
    writer: str
    export_path: str
    export_keep_minutes: int

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value gold cannot run with (``file``: where
        the profile came from, for the message)."""
        for key, value in (("gold.arrow_batch_size", self.arrow_batch_size),
                           ("gold.partition_bytes", self.partition_bytes)):
            if value <= 0:
                raise ConfigError(f"{file}: {key} must be greater than 0, got {value}")
        if self.export_keep_minutes < 0:
            raise ConfigError(f"{file}: gold.export_keep_minutes must be 0 or more, "
                              f"got {self.export_keep_minutes}")
        if self.inference_threads < 0:
            raise ConfigError(f"{file}: gold.inference_threads must be 0 (auto) or more")
        if self.batch_size < 0:
            raise ConfigError(f"{file}: gold.batch_size must be 0 (the engine's best) or more")
        if self.engine not in ENGINES:
            raise ConfigError(
                f"{file}: gold.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"
            )
        if self.image_reader not in IMAGE_READERS:
            raise ConfigError(
                f"{file}: gold.image_reader must be one of {', '.join(IMAGE_READERS)}, "
                f"got {self.image_reader!r}"
            )
        if self.image_reader == "workers" and not storage_of(config.lakehouse).direct:
            raise ConfigError(
                f"{file}: gold.image_reader is workers, but the lakehouse {config.lakehouse} is "
                "not on a local filesystem; the workers read local silver files only. Use auto "
                "or spark (Spark then reads the images from the object store)."
            )
        if self.writer not in WRITERS:
            raise ConfigError(
                f"{file}: gold.writer must be one of {', '.join(WRITERS)}, got {self.writer!r}"
            )
        if self.writer == "workers" and not storage_of(config.lakehouse).direct:
            raise ConfigError(
                f"{file}: gold.writer is workers, but the lakehouse {config.lakehouse} is not on a "
                "local filesystem; the workers write local files only. Use auto or spark."
            )
        if self.writer == "workers" and self.image_reader == "spark":
            raise ConfigError(
                f"{file}: gold.writer is workers, but gold.image_reader is spark; the workers "
                "write the rows of the images they read themselves. Use auto or workers for "
                "gold.image_reader, or spark for gold.writer."
            )
        if not self.weights:
            raise ConfigError(f"{file}: gold.weights must be imagenet, random or a file path")


@dataclass(frozen=True)
class PcaSettings:
    variance: float
    k: int
    min_rows: int
    plot_sample: int

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value the PCA job cannot run with."""
        for key, value in (("pca.min_rows", self.min_rows),
                           ("pca.plot_sample", self.plot_sample)):
            if value <= 0:
                raise ConfigError(f"{file}: {key} must be greater than 0, got {value}")
        if not 0.0 < self.variance <= 1.0:
            raise ConfigError(f"{file}: pca.variance must be in (0, 1], got {self.variance}")
        if self.k < 0:
            raise ConfigError(f"{file}: pca.k must be 0 (choose by variance) or more")


@dataclass(frozen=True)
class ClassifierSettings:
    species_map: str
    reg_param: float
    elastic_net: float
    max_iter: int
    source_balance: bool
    unknown_false_rate: float
    calibration_share: float
    min_rows: int
    top: int
    views: tuple[str, ...]
    view_sources: tuple[str, ...]
    view_weight: float

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value training or prediction cannot run with."""
        c = self
        if c.reg_param < 0 or not 0.0 <= c.elastic_net <= 1.0 or c.max_iter <= 0:
            raise ConfigError(f"{file}: classifier.reg_param must be >= 0, "
                              "classifier.elastic_net in [0, 1] and classifier.max_iter > 0")
        if not 0.0 < c.unknown_false_rate < 0.5 or not 0.0 < c.calibration_share < 0.5:
            raise ConfigError(f"{file}: classifier.unknown_false_rate and "
                              "classifier.calibration_share must be in (0, 0.5)")
        if c.top < 3:
            raise ConfigError(f"{file}: classifier.top must be 3 or more, got {c.top}")
        if c.min_rows < 2:
            raise ConfigError(f"{file}: classifier.min_rows must be 2 or more")
        from common.images import VIEWS  # noqa: PLC0415 - Pillow only when validating

        unknown_views = sorted(set(c.views) - set(VIEWS))
        if unknown_views:
            raise ConfigError(f"{file}: classifier.views {unknown_views} unknown; choose "
                              f"among {sorted(VIEWS)}")
        if not 0.0 <= c.view_weight < 1.0:
            raise ConfigError(f"{file}: classifier.view_weight must be in [0, 1), got "
                              f"{c.view_weight}")
        if c.species_map and not Path(c.species_map).is_file():
            raise ConfigError(f"{file}: classifier.species_map {c.species_map!r} is not a file")


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    max_upload_bytes: int
    reload_seconds: float
    engines: int

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value the service cannot run with."""
        if self.max_upload_bytes <= 0 or not 0 < self.port < 65536 or (
                self.reload_seconds <= 0):
            raise ConfigError(f"{file}: serve.max_upload_bytes and serve.reload_seconds must "
                              "be greater than 0 and serve.port a TCP port (1-65535)")
        if self.engines < 0:
            raise ConfigError(f"{file}: serve.engines must be 0 (one per core) or more")
