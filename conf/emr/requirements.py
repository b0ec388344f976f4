"""Print the EMR nodes' Python requirements: pyproject's pins minus what EMR provides.

EMR ships Spark and Delta (pyspark, delta-spark); installing the pip packages on the
nodes would shadow the cluster's own. Used by ``make emr-package``.
"""

import sys
import tomllib
from pathlib import Path

PROVIDED_BY_EMR = ("pyspark", "delta-spark")


def requirements(pyproject: Path) -> list[str]:
    pins = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [pin for pin in pins if pin.split("==")[0].strip() not in PROVIDED_BY_EMR]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    sys.stdout.write("\n".join(requirements(root / "pyproject.toml")) + "\n")
