"""What every layer job's ``main()`` shares: arguments, the job lock, the run log, exit codes.

Exit codes: 0 success; 1 the run failed (recorded in ``ops.runs``); 2 bad configuration
or arguments (nothing touched); 3 another run of the same job holds the lock; 4 the
lakehouse holds a table this product must not touch.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator

from pyspark.sql import SparkSession

from common.config import (
    Config,
    ConfigError,
    join_path,
    load_config,
    parse_override,
    with_cli_values,
)
from common.lake import LakehouseError
from common.log import setup_logging
from common.runlog import Run, forget_run, new_run_id, start_run, write_run
from common.spark import build_session
from common.storage import LockBusy, storage_of

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_BUSY, EXIT_LAKEHOUSE = 0, 1, 2, 3, 4

# Test-only fault injection: FRUITS_FAULT=<point> kills the whole process group
# (driver JVM, Python driver, Python workers) when the run reaches <point>. PySpark's
# worker daemon runs in a process group of its own, so the test names the driver's
# group in FRUITS_FAULT_PGID; without it the caller's own group is killed.
FAULT_ENV = "FRUITS_FAULT"
FAULT_GROUP_ENV = "FRUITS_FAULT_PGID"


class JobBusyError(RuntimeError):
    """Another run of the same job holds the lakehouse's lock for it."""


def fault_point(name: str) -> None:
    """Kill the process group here if a test asked for it (``FRUITS_FAULT=name``)."""
    if os.environ.get(FAULT_ENV) == name:
        log.warning("fault injection: killing the process group at %s", name)
        group = int(os.environ.get(FAULT_GROUP_ENV) or os.getpgrp())
        os.killpg(group, signal.SIGKILL)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--env", default="local", help="profile in conf/ (default: local)")
    parser.add_argument("--lakehouse", help="lakehouse root (folder or s3a:// URI)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one profile setting, e.g. --set gold.batch_size=32 (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def config_from_args(args: argparse.Namespace, **cli_values: str | None) -> Config:
    overrides = dict(parse_override(text) for text in args.overrides)
    config = load_config(args.env, overrides)
    return with_cli_values(config, lakehouse=args.lakehouse, **cli_values)


@contextlib.contextmanager
def job_lock(config: Config, job: str) -> Iterator[None]:
    """Hold the lakehouse's lock of ``job`` for the run (:meth:`common.storage.Storage.lock`:
    ``<lakehouse>/_locks/<job>.lock`` on a local lakehouse, released by the kernel when the
    process dies, even by SIGKILL; none on an object store, where Delta's optimistic
    concurrency rejects the conflicting commit instead)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(storage_of(config.lakehouse).lock(
                join_path(config.lakehouse, "_locks"), job, wait=False))
        except LockBusy as busy:
            raise JobBusyError(
                f"another {job} run is in progress on {config.lakehouse} ({busy}); "
                "it was not started twice. Wait for it to finish, then run again: "
                "the next run picks up whatever is left."
            ) from None
        yield


# What holds memory in each job, so an out-of-memory message names the setting to lower.
MEMORY_SETTINGS = {
    "bronze": "bronze.max_file_bytes (files up to this size are read whole into memory)",
    "silver": "silver.arrow_batch_size (images per batch handed to the decoder) or "
              "silver.max_pixels (the largest image decoded)",
    "gold": "gold.arrow_batch_size (images per batch handed to the model) or "
            "gold.batch_size (images per model call)",
    "pca": "pca.plot_sample (rows collected for the plot)",
}
# What py4j raises in the Python driver when the JVM at the other end is gone.
_JVM_GONE = ("Py4JNetworkError", "Answer from Java side is empty",
             "Error while sending or receiving", "Error while receiving")


def explain_failure(exc: BaseException, config: Config, job: str = "") -> str:
    """A user-facing reason for a failed run, naming the setting to change."""
    text = f"{type(exc).__name__}: {exc}"
    lower = MEMORY_SETTINGS.get(job, "the Arrow batch sizes (silver/gold.arrow_batch_size)")
    profile = f"conf/{config.env}.yaml"
    if "OutOfMemoryError" in text:
        return (
            f"out of memory in the Spark JVM (Java heap). Raise spark.driver_memory (in local "
            f"mode the executors run in the driver's JVM) / spark.executor_memory in {profile} "
            f"or with --set (given to `make` as JOB_ARGS, so it reaches the JVM at start), or "
            f"lower {lower}. Cause: {_short(text)}"
        )
    if isinstance(exc, MemoryError) or "MemoryError" in text:
        return (
            f"out of memory in a Python worker. Lower {lower}, or give the workers more "
            f"memory (spark.extra.spark.executor.pyspark.memory in {profile} caps each "
            f"worker when set; otherwise the machine's memory is the limit). "
            f"Cause: {_short(text)}"
        )
    if "Python worker exited unexpectedly" in text or (
        "crashed" in text.lower() and "python" in text.lower()
    ):
        return (
            f"a Python worker died during the run: the system kills one when memory runs "
            f"out (see `dmesg`), or it crashed. Lower {lower}, or run fewer tasks at once "
            f"(spark.master local[1]). Cause: {_short(text)}"
        )
    if isinstance(exc, ConnectionRefusedError) or any(m in text for m in _JVM_GONE):
        return (
            f"the Spark JVM stopped during the run, so nothing of this run was committed. "
            f"It stops like this when it runs out of memory (look above for "
            f"java.lang.OutOfMemoryError; then raise spark.driver_memory in {profile} or "
            f"with --set, or lower {lower}) or when it is killed. Cause: {_short(text)}"
        )
    if "No space left on device" in text or "ENOSPC" in text:
        return (
            f"out of disk space. Free space under {config.lakehouse} and Spark's scratch "
            f"folder (spark.local.dir, default /tmp), or point --lakehouse at a larger disk. "
            f"Cause: {_short(text)}"
        )
    if "ConcurrentAppendException" in text or "ConcurrentDeleteReadException" in text or (
        "ConcurrentModificationException" in text
    ):
        return (
            "another process changed the same table during this run, so Delta refused this "
            "run's commit (nothing of it was written). Run the job again: it picks up what "
            f"is left. Cause: {_short(text)}"
        )
    return _short(text, 2000)


def _short(text: str, limit: int = 600) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


def run_job(
    job: str,
    config: Config,
    body: Callable[[SparkSession, Config, Run], None],
    *,
    log_level: str = "INFO",
    details: dict | None = None,
) -> int:
    """Lock, start Spark, run ``body``, record the run in ``ops.runs``, print a summary.

    ``details``: facts the run's ``ops.runs`` row holds from its start (bronze's source)."""
    setup_logging(log_level)
    return run_layer(job, config, body, lambda: build_session(config, f"fruits-{job}",
                                                              register=False), details)


def run_layer(
    job: str,
    config: Config,
    body: Callable[[SparkSession, Config, Run], None],
    session: Callable[[], SparkSession],
    details: dict | None = None,
) -> int:
    """:func:`run_job` on the session ``session()`` returns (started once the lock is held;
    the one-application pipeline passes the session its layers share)."""
    run = Run(job=job, run_id=new_run_id(job), details=dict(details or {}))
    try:
        with job_lock(config, job):
            spark = session()
            try:
                log.info("%s run %s on lakehouse %s", job, run.run_id, config.lakehouse)
                start_run(spark, config, run, own_lock=storage_of(config.lakehouse).locks)
                body(spark, config, run)
                run.finish("succeeded")
                fault_point(f"{job}:before_runlog")
            except ConfigError as exc:
                forget_run(spark, config, run)
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            except LakehouseError as exc:
                run.finish("refused", str(exc))
                write_run(spark, config, run)
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_LAKEHOUSE
            except Exception as exc:  # noqa: BLE001 - recorded and reported
                run.finish("failed", explain_failure(exc, config, job))
                log.exception("%s run %s failed", job, run.run_id)
                try:
                    write_run(spark, config, run)
                except Exception as lost:  # noqa: BLE001 - e.g. the JVM is gone
                    log.error("this failed run could not be recorded in ops.runs: %s",
                              _short(f"{type(lost).__name__}: {lost}", 300))
                print(f"error: {job} failed: {run.error}", file=sys.stderr)
                return EXIT_FAILED
            write_run(spark, config, run)
    except JobBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(run.summary())
    return EXIT_OK


def parse_or_exit(
    parser: argparse.ArgumentParser, argv: list[str] | None, build: Callable[..., Config]
) -> tuple[argparse.Namespace, Config] | int:
    """Parse ``argv`` and build the config; on a ConfigError print it and return 2."""
    args = parser.parse_args(argv)
    try:
        return args, build(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
