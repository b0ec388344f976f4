"""One session-scoped Delta-enabled SparkSession; every test gets its own lakehouse."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Python workers must run this interpreter (the project's .venv).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from common.config import Config, load_config  # noqa: E402
from common.spark import build_session  # noqa: E402

DATABASES = ("bronze", "silver", "gold", "ops")
SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fruits360-sample"

# Settings that keep a 2-core test run quick; everything else is the local profile.
TEST_OVERRIDES = {
    "spark.shuffle_partitions": 2,
    "spark.snapshot_partitions": 1,
}


def make_config(lakehouse: Path, **overrides: object) -> Config:
    values: dict[str, object] = {**TEST_OVERRIDES, "lakehouse": str(lakehouse)}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config("local", values)


@pytest.fixture(scope="session", autouse=True)
def spark_scratch(tmp_path_factory: pytest.TempPathFactory):
    """Spark's scratch folders (block manager, checkpoints, a job's files) under pytest's
    temporary folder instead of /tmp, for the in-process session and every job the tests
    submit. Tests kill jobs on purpose, and a killed JVM leaves its scratch behind (silver's
    local checkpoint of decoded images among it); pytest deletes the folders of old test
    sessions. A SPARK_LOCAL_DIRS of the user's own is kept."""
    if os.environ.get("SPARK_LOCAL_DIRS"):
        yield
        return
    os.environ["SPARK_LOCAL_DIRS"] = str(tmp_path_factory.mktemp("spark-scratch"))
    yield
    os.environ.pop("SPARK_LOCAL_DIRS", None)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    config = make_config(tmp_path_factory.mktemp("session-lakehouse"))
    session = build_session(config, "fruits-tests")
    yield session
    session.stop()


@pytest.fixture
def lakehouse(spark, tmp_path: Path) -> Path:
    """A fresh lakehouse folder; the catalog forgets the previous test's tables."""
    for database in DATABASES:
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
    spark.catalog.clearCache()
    path = tmp_path / "lakehouse"
    return path


@pytest.fixture
def config(lakehouse: Path) -> Config:
    return make_config(lakehouse)


def keras_home_with_weights() -> Path | None:
    """KERAS_HOME (or ~/.keras) if it holds the ImageNet no-top weights."""
    from gold.model import NO_TOP_FILE, keras_cache_dir

    return keras_cache_dir() if (keras_cache_dir() / NO_TOP_FILE).is_file() else None


@pytest.fixture
def imagenet() -> None:
    """Tests of feature values need the real ImageNet weights in Keras' cache."""
    if keras_home_with_weights() is None:
        message = (
            "the ImageNet weights are not in $KERAS_HOME/models: see README, 'Model weights'"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
