"""The jobs on a real Spark standalone cluster (master + 2 workers on 127.0.0.1).

The project's code reaches the executors as a zip passed with ``--py-files`` (as on a
cluster whose nodes never saw the source tree); the test checks that the executors
imported it from there. Results must equal a local-mode run on the same images.
Every process started here is stopped, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests import submit
from tests.imagegen import gradient, jpeg_bytes, png_bytes, write

pytestmark = pytest.mark.long

SPARK_CLASS = str(Path(sys.executable).parent / "spark-class")
MASTER_PORT = 7077


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def code_zip(target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for package in ("common", "bronze", "silver", "gold"):
            for file in (submit.ROOT / package).rglob("*.py"):
                archive.write(file, file.relative_to(submit.ROOT))
    return target


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("standalone")
    env = submit.environment()
    env["SPARK_LOG_DIR"] = str(work / "logs")
    processes = []

    def launch(*args: str) -> None:
        log = open(work / f"{args[0].rsplit('.', 1)[-1]}-{len(processes)}.log", "w")
        processes.append(subprocess.Popen([SPARK_CLASS, *args], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        launch("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
               "--port", str(MASTER_PORT), "--webui-port", "18081")
        wait_for_port(MASTER_PORT)
        for i in range(2):
            launch("org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{MASTER_PORT}",
                   "--host", "127.0.0.1", "--cores", "1", "--memory", "3g",
                   "--webui-port", str(18082 + i), "--work-dir", str(work / f"worker{i}"))
        time.sleep(5)
        yield work
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)


def test_cluster_run_equals_local_run(cluster: Path, spark, tmp_path: Path, monkeypatch) -> None:
    # The profiles live beside the code, not in it (as on EMR: FRUITS_CONF_DIR).
    monkeypatch.setenv("FRUITS_CONF_DIR", str(submit.ROOT / "conf"))
    source = tmp_path / "images"
    for i in range(8):
        content = jpeg_bytes(gradient(70, 60, seed=i)) if i % 2 else png_bytes(gradient(seed=i))
        write(source / f"Label {i % 3}" / f"img {i}.{'jpg' if i % 2 else 'png'}", content)
    write(source / "Label 0" / "broken.jpg", b"nope")
    archive = code_zip(tmp_path / "fruits_lakehouse.zip")
    cluster_args = ("--master", f"spark://127.0.0.1:{MASTER_PORT}", "--py-files", str(archive),
                    "--total-executor-cores", "2")
    memory = ("--set", "spark.executor_memory=2g")  # the workers offer 3 GB each
    results = {}
    for name, spark_args in (("local", ()), ("cluster", cluster_args)):
        lakehouse = tmp_path / name
        for job, args in (("bronze", ("--source", str(source))), ("silver", ()),
                          ("gold", ("--weights", "random", "--engine", "onnx"))):
            code, output = submit.run(job, lakehouse, *args, *memory, spark_args=spark_args)
            assert code == 0, output[-3000:]
        results[name] = {
            r.path: (r.label, np.asarray(r.features))
            for r in spark.read.format("delta").load(str(lakehouse / "gold/image_features")).collect()
        }
        app = spark.read.format("delta").load(str(lakehouse / "ops/runs")).where(
            "job = 'gold'").first().app_id
        assert app.startswith("app-" if name == "cluster" else "local-")
    assert len(results["local"]) == 8
    assert results["cluster"].keys() == results["local"].keys()
    for path, (label, features) in results["local"].items():
        assert results["cluster"][path][0] == label
        assert np.abs(results["cluster"][path][1] - features).max() <= 1e-4

    # The executors imported the project from the shipped zip, not from the source tree.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.getOrCreate()\n"
        "def where(_):\n    import gold.udf\n    return [gold.udf.__file__]\n"
        "print('FILES', sorted(set(s.sparkContext.parallelize(range(4), 4)"
        ".mapPartitions(where).collect())))\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), *cluster_args,
         "--executor-memory", "2g", str(probe)],
        cwd=tmp_path, env=submit.environment(), capture_output=True, text=True, timeout=300,
    )
    files = [line for line in result.stdout.splitlines() if line.startswith("FILES")]
    assert files and "fruits_lakehouse.zip" in files[0], result.stdout + result.stderr[-2000:]
