"""Logging set-up for jobs: timestamped lines on stderr that show a run's progress."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; quiet the chatty libraries."""
    logging.basicConfig(level=level.upper(), format=FORMAT, stream=sys.stderr, force=True)
    for noisy in ("py4j", "matplotlib", "PIL", "tensorflow", "absl", "tf2onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
