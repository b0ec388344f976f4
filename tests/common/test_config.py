"""Profiles load into typed frozen config; bad settings fail with a message naming them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from common.config import CONF_DIR, ConfigError, available_profiles, load_config, parse_override
from common.spark import main as spark_main


def test_local_profile_loads_with_absolute_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config("local")
    assert config.lakehouse == str(tmp_path / "lakehouse")
    assert config.export_path == str(tmp_path / "lakehouse" / "exports" / "image_features")
    assert config.bronze.extensions == ("*",)
    assert config.gold.engine == "tflite"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gold.batch_size = 3  # type: ignore[misc]


def test_profiles_hold_only_keys_of_the_base_and_inherit_the_rest(tmp_path: Path) -> None:
    assert available_profiles() == ["emr", "local", "s3-local"]
    local, emr = load_config("local"), load_config("emr")
    # emr's own values win; what it does not say comes from base.yaml
    assert emr.spark.master == "yarn" and emr.gold.partition_bytes == 33554432
    assert emr.silver.max_pixels == local.silver.max_pixels == 250_000_000
    assert emr.silver.image_codec == "zstd" and local.silver.image_codec == "lz4_raw"
    assert emr.spark.extra["spark.sql.catalogImplementation"] == "hive"
    assert "spark.memory.offHeap.enabled" not in emr.spark.extra
    assert local.spark.extra["spark.memory.offHeap.size"] == "1g"
    # a key the base does not know is named, with the profile's file
    (tmp_path / "base.yaml").write_text((CONF_DIR / "base.yaml").read_text())
    (tmp_path / "typo.yaml").write_text("gold:\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config("typo", conf_dir=tmp_path)
    assert "unknown setting 'gold.batchsize'" in str(info.value)
    assert "typo.yaml" in str(info.value)
    # an empty profile is the base itself
    (tmp_path / "plain.yaml").write_text("# nothing differs\n")
    assert load_config("plain", conf_dir=tmp_path).gold == load_config("base").gold


def test_spark_extra_overrides_keep_dotted_spark_keys() -> None:
    config = load_config("local", dict([
        parse_override("spark.extra.spark.executor.pyspark.memory=1g"),
        parse_override("spark.driver_memory=6g")]))
    assert config.spark.extra["spark.executor.pyspark.memory"] == "1g"
    assert config.spark.driver_memory == "6g"


def test_submit_args_apply_the_jobs_set_overrides(capsys) -> None:
    """The JVM starts before the job: `--submit-args` reads the job's --set (and ignores
    its other options), so the memory given on the command line is the JVM's."""
    assert spark_main(["--submit-args", "--env", "local", "--set", "spark.driver_memory=3g",
                       "--rebuild", "--set", "spark.extra.spark.foo.bar=7"]) == 0
    args = capsys.readouterr().out.splitlines()
    assert args[args.index("--driver-memory") + 1] == "3g"
    assert "spark.foo.bar=7" in args
    assert spark_main(["--submit-args", "--set", "spark.driver_memory=64m"]) == 2
    assert "spark.driver_memory is 64m; Spark needs at least 512m" in capsys.readouterr().err


def test_overrides_are_typed() -> None:
    config = load_config("local", dict([parse_override("gold.batch_size=32"),
                                        parse_override("bronze.extensions=[tif]")]))
    assert config.gold.batch_size == 32
    assert config.bronze.extensions == ("tif",)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gold.batch_sise": 3}, "unknown setting 'gold.batch_sise'"),
        ({"gold.batch_size": "many"}, "gold.batch_size must be a whole number"),
        ({"gold.batch_size": -1}, "gold.batch_size must be 0 (the engine's best) or more"),
        ({"gold.arrow_batch_size": 0}, "gold.arrow_batch_size must be greater than 0"),
        ({"gold.engine": "torch"}, "gold.engine must be one of onnx, tensorflow, tflite"),
        ({"gold.image_reader": "jvm"}, "gold.image_reader must be one of auto, workers, spark"),
        ({"silver.image_codec": "lz4"},
         "silver.image_codec must be one of zstd, lz4_raw, snappy, uncompressed, got 'lz4'"),
        ({"gold.image_reader": "workers", "lakehouse": "s3a://bucket/lake"},
         "gold.image_reader is workers, but the lakehouse s3a://bucket/lake is not on a local"),
        ({"gold.writer": "jvm"}, "gold.writer must be one of auto, workers, spark"),
        ({"gold.writer": "workers", "lakehouse": "s3a://bucket/lake"},
         "gold.writer is workers, but the lakehouse s3a://bucket/lake is not on a local"),
        ({"gold.writer": "workers", "gold.image_reader": "spark"},
         "gold.writer is workers, but gold.image_reader is spark"),
        ({"pca.variance": 1.5}, "pca.variance must be in (0, 1]"),
        ({"nosuch.key": 1}, "unknown setting 'nosuch.key'"),
        ({"spark.driver_memory": "lots"}, "spark.driver_memory must be a JVM memory size"),
        ({"spark.executor_memory": "256m"}, "spark.executor_memory is 256m; Spark needs at "
                                            "least 512m"),
    ],
)
def test_bad_settings_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("local", overrides)
    assert message in str(info.value)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("prod")
    assert "unknown profile 'prod'" in str(info.value) and "local" in str(info.value)


def test_missing_key_in_a_profile_file_is_named(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONF_DIR / "base.yaml").read_text())
    del raw["silver"]["min_side"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_config("broken", conf_dir=tmp_path)
    assert "missing setting(s) silver.min_side" in str(info.value)


@pytest.mark.parametrize("module", ["bronze.job", "silver.job", "gold.job", "common.sql",
                                    "gold.train_job", "common.pipeline", "common.spark"])
def test_a_lakehouse_that_is_a_file_is_exit_2_in_one_line(tmp_path: Path, capsys,
                                                         module: str) -> None:
    import importlib

    (tmp_path / "photos" / "Kiwi").mkdir(parents=True)
    (tmp_path / "photos" / "Kiwi" / "k.jpg").write_bytes(b"x")
    lake = tmp_path / "lake.txt"
    lake.write_text("not a folder")
    for given, what in ((lake, "is a file"), (lake / "sub", f"is inside the file {lake}")):
        argv = ["--lakehouse", str(given), "--source", str(tmp_path / "photos")]
        if module == "common.sql":
            argv = ["--lakehouse", str(given), "SELECT 1"]
        elif module == "common.spark":  # what the make targets run before spark-submit
            argv = ["--submit-args", "--lakehouse", str(given)]
        elif module not in ("bronze.job", "common.pipeline"):
            argv = argv[:2]
        assert importlib.import_module(module).main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: command line: lakehouse {given} {what}, not a folder"
    assert lake.read_text() == "not a folder"
