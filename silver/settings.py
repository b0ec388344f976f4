"""Silver's settings (the ``silver:`` section of a profile; ``conf/base.yaml`` says what
each means) and their rules. ``common.config`` finds this class by name
(``common.config.SECTIONS``) and runs :meth:`SilverSettings.check` when a profile loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.config import ConfigError

if TYPE_CHECKING:
    from common.config import Config

LABEL_RULES = ("parent", "first_folder")
# Parquet codecs for silver.images' files (Spark's names; every one is read by pyarrow).
IMAGE_CODECS = ("zstd", "lz4_raw", "snappy", "uncompressed")


@dataclass(frozen=True)
class SilverSettings:
    max_pixels: int
    min_side: int
    arrow_batch_size: int
    image_codec: str
    label_rule: str
    row_group_bytes: int

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value silver cannot run with."""
        for key, value in (("silver.max_pixels", self.max_pixels),
                           ("silver.min_side", self.min_side),
                           ("silver.arrow_batch_size", self.arrow_batch_size),
                           ("silver.row_group_bytes", self.row_group_bytes)):
            if value <= 0:
                raise ConfigError(f"{file}: {key} must be greater than 0, got {value}")
        if self.label_rule not in LABEL_RULES:
            raise ConfigError(f"{file}: silver.label_rule must be one of "
                              f"{', '.join(LABEL_RULES)}, got {self.label_rule!r}")
        if self.image_codec not in IMAGE_CODECS:
            raise ConfigError(
                f"{file}: silver.image_codec must be one of {', '.join(IMAGE_CODECS)}, "
                f"got {self.image_codec!r}"
            )
