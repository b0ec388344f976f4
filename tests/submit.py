"""Run the real spark-submit jobs as a user would, in their own process group."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
JOBS = {
    "bronze": "bronze/job.py",
    "silver": "silver/job.py",
    "gold": "gold/job.py",
    "pca": "gold/pca_job.py",
    "sql": "common/sql.py",
    "pipeline": "common/pipeline.py",
}
QUICK = ["--set", "spark.shuffle_partitions=2", "--set", "spark.snapshot_partitions=1"]


def command(
    job: str, lakehouse: Path | str, *args: str, spark_args: tuple[str, ...] = (),
    env_name: str = "local",
) -> str:
    """A shell line that runs ``job`` with profile ``env_name``'s spark-submit options."""
    profile = subprocess.run(
        [sys.executable, "-m", "common.spark", "--submit-args", "--env", env_name,
         "--lakehouse", str(lakehouse), *QUICK, *args],  # as the Makefile: --set reaches the JVM
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    argv = [str(VENV_BIN / "spark-submit"), *profile, *spark_args, JOBS[job], "--env",
            env_name, "--lakehouse", str(lakehouse), *QUICK, *args]
    # $$ is the new session's leader, so the fault hook can kill the whole group.
    return f"export FRUITS_FAULT_PGID=$$; exec {shlex.join(argv)}"


def environment(fault: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FRUITS_FAULT", None)
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_LOCAL_IP="127.0.0.1")
    if fault:
        env["FRUITS_FAULT"] = fault
    return env


def start(
    job: str, lakehouse: Path | str, *args: str, fault: str | None = None,
    spark_args: tuple[str, ...] = (), env_name: str = "local",
) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", command(job, lakehouse, *args, spark_args=spark_args,
                               env_name=env_name)], cwd=ROOT,
        env=environment(fault),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        output, _ = process.communicate()
    kill_group(process)  # stray Python workers of a killed run
    return process.returncode, output


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(
    job: str, lakehouse: Path | str, *args: str, fault: str | None = None,
    spark_args: tuple[str, ...] = (), env_name: str = "local",
) -> tuple[int, str]:
    return finish(start(job, lakehouse, *args, fault=fault, spark_args=spark_args,
                        env_name=env_name))


def kill_after(job: str, lakehouse: Path, seconds: float, *args: str) -> tuple[int, str]:
    process = start(job, lakehouse, *args)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill_group(process)
    time.sleep(0.5)
    return finish(process)
