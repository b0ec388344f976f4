"""``make delta-bench``: each private Delta route of ``common.delta_log`` against the public
API that answers the same question, on a real lakehouse.

    python -m tests.benchmarks.delta_routes_bench --lakehouse DIR [--repeat 5]

On a lakehouse whose layers are up to date (``make bench`` leaves
``bench-data/lakehouse-classify``), in one Spark session (local profile), each question
is asked ``--repeat`` times by both routes after one warm-up, and their answers must
agree (the benchmark stops otherwise):

1. the latest version of gold.image_features: the names in its log
   (``latest_version``) against ``DeltaTable.history(1)``;
2. its metadata (id, schema, properties): the checksum file (``table_state``) against
   ``DeltaTable.detail()``;
3. the data files of bronze.images, what bronze compares with the source listing: the
   checksum file (``data_files``) against ``DataFrame.inputFiles()``;
4. what gold still has to featurize after a completed run (nothing): the log path
   (``changes_from_log``, a few commit files) against the key comparison
   (``changes``), each as gold's run asks it; and the same for silver from bronze.

Prints the median seconds of each and writes ``bench-results/delta_routes.json``.
Gold's worker-written files (the private transaction) are measured by ``make bench``
(the writer's share of a gold run), not here.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"


def _timed(route: Callable[[], object], repeat: int) -> tuple[float, object]:
    answer = route()  # warm-up: the first call also plans and compiles
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = route()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lakehouse", default=str(ROOT / "bench-data" / "lakehouse-classify"))
    parser.add_argument("--env", default="local")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import common  # noqa: F401 - first, before pyspark: see common/__init__.py
    from delta.tables import DeltaTable

    from bronze.tables import BRONZE_IMAGES
    from common import delta_log
    from common.config import load_config
    from common.incremental import changes, changes_from_log
    from common.lake import Table, table
    from common.spark import build_session
    from gold.tables import GOLD_FEATURES
    from silver.tables import SILVER_IMAGES, SILVER_REJECTS

    config = load_config(args.env, {"lakehouse": str(Path(args.lakehouse).resolve())})
    spark = build_session(config, "delta-routes-bench")
    bronze_t, silver_t, gold_t, rejects_t = (
        table(spark, spec, config.lakehouse)
        for spec in (BRONZE_IMAGES, SILVER_IMAGES, GOLD_FEATURES, SILVER_REJECTS))
    bronze, gold = bronze_t.location, gold_t.location
    if not all(t.exists() for t in (bronze_t, silver_t, gold_t)):
        raise SystemExit(f"{config.lakehouse} has no bronze, silver and gold: build it first "
                         "(make bench, or make pipeline on photos)")
    model = (delta_log.commit_info(delta_log.read_commit(
        spark, gold, delta_log.latest_version(spark, gold)) or []).get("userMetadata") or "")
    identity = json.loads(model)["model"] if model.startswith("{") else ""

    def history() -> int:
        return DeltaTable.forPath(spark, gold).history(1).first()["version"]

    def detail() -> tuple:
        row = DeltaTable.forPath(spark, gold).detail().first()
        return row["id"], dict(row["properties"] or {})

    def state() -> tuple:
        found = delta_log.table_state(spark, gold)
        return found.id, found.configuration

    def input_files() -> list[str]:
        return sorted(p.removeprefix("file:") for p in
                      spark.read.format("delta").load(bronze).inputFiles())

    def crc_files() -> list[str]:
        return sorted(p.removeprefix("file:") for p in delta_log.data_files(spark, bronze)[1])

    def by_keys(upstream: Table, targets: list[Table]) -> Callable[[], int]:
        return lambda: changes(spark, upstream.pinned()[0], targets).pending

    def by_log(upstream: Table, target: Table, also: list[Table],
               **facts: str) -> Callable[[], int]:
        def route() -> int:
            found = changes_from_log(upstream, upstream.version(), target, also, **facts)
            if found is None:
                raise SystemExit(f"the log path does not apply to {target.name}: run the "
                                 "pipeline once more so that its last run was complete")
            return found.pending
        return route

    questions = [
        ("latest version of gold", lambda: delta_log.latest_version(spark, gold), history),
        ("metadata of gold", state, detail),
        ("data files of bronze", crc_files, input_files),
        ("gold's pending images (none)", by_log(silver_t, gold_t, [], model=identity),
         by_keys(silver_t, [gold_t])),
        ("silver's pending files (none)", by_log(bronze_t, silver_t, [rejects_t]),
         by_keys(bronze_t, [silver_t, rejects_t])),
    ]
    rows = []
    for name, private, public in questions:
        private_s, private_answer = _timed(private, args.repeat)
        public_s, public_answer = _timed(public, args.repeat)
        if private_answer != public_answer:
            raise SystemExit(f"{name}: the routes disagree: {str(private_answer)[:200]} "
                             f"against {str(public_answer)[:200]}")
        rows.append({"question": name, "private_s": round(private_s, 6),
                     "public_s": round(public_s, 6),
                     "public_over_private": round(public_s / private_s)})
        print(f"{name:32s} private {private_s * 1000:9.2f} ms   "
              f"public {public_s * 1000:9.2f} ms   x{public_s / private_s:.0f}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    result = {"lakehouse": config.lakehouse, "repeat": args.repeat, "commit": commit,
              "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
                         "cores", "measured_at": time.strftime("%Y-%m-%d %H:%M UTC",
                                                               time.gmtime()),
              "rows": {name: t.read().count()
                       for name, t in (("bronze", bronze_t), ("silver", silver_t),
                                       ("gold", gold_t))},
              "questions": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "delta_routes.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {OUT / 'delta_routes.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
