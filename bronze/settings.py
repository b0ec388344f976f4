"""Bronze's settings (the ``bronze:`` section of a profile; ``conf/base.yaml`` says what
each means) and their rules. ``common.config`` finds this class by name
(``common.config.SECTIONS``) and runs :meth:`BronzeSettings.check` when a profile loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.config import ConfigError

if TYPE_CHECKING:
    from common.config import Config


@dataclass(frozen=True)
class BronzeSettings:
    extensions: tuple[str, ...]
    max_file_bytes: int
    read_chunk_files: int

    def check(self, config: Config, file: str) -> None:
        """Raise :class:`ConfigError` on a value bronze cannot run with."""
        if not self.extensions:
            raise ConfigError(f"{file}: bronze.extensions must list at least one file ending")
        for key, value in (("bronze.max_file_bytes", self.max_file_bytes),
                           ("bronze.read_chunk_files", self.read_chunk_files)):
            if value <= 0:
                raise ConfigError(f"{file}: {key} must be greater than 0, got {value}")
