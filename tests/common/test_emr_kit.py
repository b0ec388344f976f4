"""The EMR deployment files hold the structure EMR's API expects (AWS is out of reach)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from common.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EMR = ROOT / "conf" / "emr"


def test_configurations_are_emr_classifications() -> None:
    configurations = json.loads((EMR / "configurations.json").read_text())

    def check(items: list) -> None:
        for item in items:
            assert set(item) <= {"Classification", "Properties", "Configurations"}, item
            assert isinstance(item["Classification"], str)
            assert all(isinstance(v, str) for v in item.get("Properties", {}).values())
            check(item.get("Configurations", []))

    check(configurations)
    by_name = {c["Classification"]: c for c in configurations}
    assert by_name["delta-defaults"]["Properties"] == {"delta.enabled": "true"}
    assert by_name["spark-hive-site"]["Properties"]["hive.metastore.client.factory.class"] == (
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory")
    exports = by_name["spark-env"]["Configurations"][0]
    assert exports["Classification"] == "export"
    assert exports["Properties"]["PYSPARK_PYTHON"].endswith("python3.11")
    defaults = by_name["spark-defaults"]["Properties"]
    assert defaults["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_steps_run_every_job_in_order_with_the_emr_profile() -> None:
    steps = json.loads((EMR / "steps.json").read_text())
    assert [s["Name"] for s in steps] == ["Fruits bronze", "Fruits silver", "Fruits gold",
                                          "Fruits pca"]
    for step in steps:
        assert set(step) == {"Type", "Name", "ActionOnFailure", "Jar", "Args"}
        assert step["Type"] == "CUSTOM_JAR" and step["Jar"] == "command-runner.jar"
        assert step["ActionOnFailure"] in ("CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER")
        args = step["Args"]
        assert args[0] == "spark-submit" and "--env" in args and args[args.index("--env") + 1] == "emr"
        script = next(a for a in args if a.endswith(".py"))
        assert script.startswith("s3://")


def test_emr_profile_has_s3_paths_and_no_secrets() -> None:
    config = load_config("emr")
    assert config.lakehouse.startswith("s3://") and config.source.startswith("s3://")
    text = (ROOT / "conf" / "emr.yaml").read_text().lower()
    for secret in ("access.key", "secret.key", "aws_access_key_id", "aws_secret"):
        assert secret not in text
    assert yaml.safe_load(text)["spark"]["master"] == "yarn"


def test_emr_requirements_are_the_pyproject_pins_minus_spark_and_delta() -> None:
    output = subprocess.run([sys.executable, str(EMR / "requirements.py")], check=True,
                            capture_output=True, text=True).stdout.split()
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert output == [p for p in pins if not p.startswith(("pyspark==", "delta-spark=="))]
    assert any(p.startswith("tensorflow-cpu==") for p in output)


def test_bootstrap_is_strict_bash() -> None:
    script = (EMR / "bootstrap.sh").read_text()
    assert script.startswith("#!/bin/bash") and "set -euxo pipefail" in script
    assert "--no-deps" in script and "python3.11" in script
    subprocess.run(["bash", "-n", str(EMR / "bootstrap.sh")], check=True)
