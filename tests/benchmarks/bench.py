"""``make bench``: side-by-side throughput of the engines, the notebook's shape and our jobs.

    python -m tests.benchmarks.bench --n 20000 [--source DIR] [--env local]

One run, on the same images and the same 2 cores:

1. pure-model throughput of each engine (no Spark, preprocessed tensors, best batch);
2. the original notebook's featurization in Spark (binaryFile read, ``repartition(20)``,
   a Scalar Iterator pandas UDF that builds the model in every partition), the peer
   baseline;
3. the pipeline cold (bronze, silver, gold through spark-submit, JVM starts included),
   gold's throughput from its run log, a no-op rerun per job, 1% new images on top:
   once as three jobs, once more (another 1%) as ``make pipeline``'s one application
   (common/pipeline.py without PCA, the same three layers);
4. peak memory of the whole process tree (PSS, a JVM by its resident set, with the
   largest processes), silver bytes per image;
5. silver on 12-megapixel JPEGs against 100x100 ones (:mod:`tests.benchmarks.silver_bench`).

Prints a table and writes every figure to ``bench-results/bench-<n>.json`` (with
``--source DIR``: ``bench-<DIR's name>.json``). Images: the
Fruits-360 sample beside the repository (``../shared/data/fruits360-sample``), replicated
under new names up to N (hard links), unless ``--source`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT.parent / "shared" / "data" / "fruits360-sample"
OUT = ROOT / "bench-results"
PY = sys.executable


def image_files(root: Path) -> list[Path]:
    """The files under ``root`` that the pipeline ingests (its default extensions)."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def replicate(sample: Path, target: Path, n: int) -> Path:
    """``n`` images under ``target``: the sample's, then copies under new names."""
    files = image_files(sample)
    if not files:
        raise SystemExit(f"no images under {sample}")
    marker = target / ".complete"
    if marker.exists() and marker.read_text() == str(n):
        for added in target.rglob("*_new*"):  # a previous run's 1% increment
            added.unlink()
        return target
    shutil.rmtree(target, ignore_errors=True)
    for i in range(n):
        original = files[i % len(files)]
        copy = i // len(files)
        name = original.name if copy == 0 else f"{original.stem}_copy{copy}{original.suffix}"
        destination = target / original.parent.name / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.link(original, destination)
    marker.write_text(str(n))
    return target


def link_tree(source: Path, target: Path) -> Path:
    """A copy of ``source``'s image tree under ``target`` (hard links; copies across disks)."""
    if not source.is_dir():
        raise SystemExit(f"SOURCE {source} is not a folder")
    shutil.rmtree(target, ignore_errors=True)
    for path in image_files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)
    return target


def add_new(source: Path, count: int, tag: str) -> None:
    """``count`` more images under new names (the 1% increment), of any format ingested."""
    files = [p for p in image_files(source) if "_new" not in p.name][:count]
    if len(files) < count:
        raise SystemExit(f"{source} has {len(files)} images, fewer than the {count} to add")
    for i, original in enumerate(files):
        os.link(original, original.with_name(f"{original.stem}_new{tag}{i}{original.suffix}"))


class PeakMemory:
    """Samples the memory of this process's descendants every second: the sum of their
    PSS (proportional set size: a page shared by forked Python workers counts once, not
    once per worker as summed RSS would), and which processes held it at the peak.

    A JVM counts by its resident set instead (``statm``, a constant-time read; never less
    than its PSS). Its ``smaps_rollup`` walks every mapping and page table: 11 ms of CPU
    per read during a gold run, against 0.02 ms for ``statm``, and a Python worker's
    2-3 ms. Over a cold pipeline of 20,000 images this thread took 3.6-3.8 s of CPU with
    every process read by PSS, 2.0-2.1 s now. Gold's speed with and without it was within
    this machine's noise both ways (interleaved cold pipelines, 2026-11-26: 248.9, 254.1
    img/s with the old sampler, 255.9, 244.5 with this one, 250.4-258.8 without). The
    pure engines and the notebook baseline run without it. Its own CPU time is reported
    (``cpu_seconds``)."""

    INTERVAL = 1.0

    def __init__(self) -> None:
        self.peak = 0
        self.cpu_seconds = 0.0
        self.at_peak: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            sizes = _tree_memory(me)
            total = sum(size for _, size in sizes)
            if total > self.peak:
                self.peak = total
                self.at_peak = sorted(sizes, key=lambda s: -s[1])[:6]
            self.cpu_seconds = time.thread_time()
            self._stop.wait(self.INTERVAL)


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE_SIZE


def _tree_memory(root: int) -> list[tuple[str, int]]:
    """(short command, bytes) of every descendant of ``root``: PSS, a JVM's resident set."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                head, tail = handle.read().rsplit(")", 1)
            parents[int(entry)] = int(tail.split()[1])
            names[int(entry)] = head.split("(", 1)[1]
        except (OSError, IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    sizes, stack = [], [root]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            try:
                size = _rss(child) if names[child] == "java" else _pss(child)
                sizes.append((f"{names[child]}[{child}]", size))
            except OSError:
                pass
            stack.append(child)
    return sizes


def submit(job: str, lakehouse: Path, *args: str, env_name: str = "local") -> float:
    """Run one job through spark-submit; return its wall seconds (JVM start included)."""
    from tests.submit import JOBS, environment

    profile = subprocess.run(
        [PY, "-m", "common.spark", "--submit-args", "--env", env_name,
         "--lakehouse", str(lakehouse)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    started = time.perf_counter()
    result = subprocess.run(
        [str(Path(PY).parent / "spark-submit"), *profile, JOBS[job], "--lakehouse",
         str(lakehouse), "--env", env_name, *args],
        cwd=ROOT, env=environment(), capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"{job} failed with exit code {result.returncode}")
    summary = [line for line in result.stdout.splitlines() if " succeeded in " in line]
    print(f"  {job:<7} {seconds:6.1f}s  {summary[-1] if summary else ''}"[:220], flush=True)
    return seconds


def cpu_description() -> str:
    """The CPU model and its widest vector instructions (from /proc/cpuinfo, Linux): the
    engines' speed depends on them (XNNPACK and ONNX Runtime use AVX-512 where present),
    Spark's JVM work much less, so the ratios differ from one kind of machine to another."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = " ".join(fields.get("model name", "unknown").split())
    flags = set(fields.get("flags", "").split())
    vector = next((name for name in ("avx512f", "avx2", "avx") if name in flags), "no AVX")
    return f"{model}, {vector}"


def pure_engines(weights: str) -> dict:
    """Engine throughput without Spark, in a subprocess limited to this machine's cores."""
    code = f"""
import json, time, numpy as np
from gold.model import build_payload, build_engine, preprocess
rng = np.random.default_rng(0)
batch = preprocess(rng.integers(0, 256, size=(64, 224, 224, 3), dtype=np.uint8))
out = {{}}
for engine in ("tflite", "onnx", "tensorflow"):
    e = build_engine(build_payload(engine, {weights!r}), threads=os.cpu_count())
    best = (0.0, 0)
    for size in (1, 8, 16, 32, 64):
        x = batch[:size]
        e.run(x); e.run(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 4.0:
            e.run(x); n += size
        best = max(best, (n / (time.perf_counter() - start), size))
    out[engine] = {{"images_per_s": round(best[0], 1), "best_batch": best[1]}}
print("RESULT" + json.dumps(out))
"""
    result = subprocess.run([PY, "-c", "import os\n" + code], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(line[-1][len("RESULT"):])


def notebook_baseline(source: Path, weights: str, workdir: Path) -> dict:
    """The original notebook's featurization shape in Spark local[2] (spark-submit)."""
    script = Path(__file__).with_name("notebook_baseline.py")
    (workdir / "_spark_events").mkdir(parents=True, exist_ok=True)
    from tests.submit import environment

    profile = subprocess.run(
        [PY, "-m", "common.spark", "--submit-args", "--lakehouse", str(workdir)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    result = subprocess.run(
        [str(Path(PY).parent / "spark-submit"), *profile, str(script), str(source),
         str(workdir / "notebook-features"), weights],
        cwd=ROOT, env=environment(), capture_output=True, text=True,
    )
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-3000:])
    return json.loads(line[-1][len("RESULT"):])


def last_gold_run(lakehouse: Path) -> dict:
    return last_run(lakehouse, "gold")


def last_run(lakehouse: Path, job: str) -> dict:
    """The newest ``ops.runs`` row of ``job`` that wrote rows (read in a new process)."""
    code = (
        "import json,sys\nfrom common.config import load_config\n"
        "from common.spark import build_session\n"
        f"c = load_config('local', {{'lakehouse': {str(lakehouse)!r}}})\n"
        "s = build_session(c, 'bench-read')\n"
        f"r = s.sql(\"SELECT * FROM ops.runs WHERE job='{job}' AND rows_out > 0 "
        "ORDER BY ended_at DESC LIMIT 1\").first()\n"
        "print('RESULT' + json.dumps(r.asDict(), default=str))\n"
    )
    from tests.submit import environment

    result = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=environment())
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(line[-1][len("RESULT"):])


def results_file(args: argparse.Namespace) -> Path:
    """``bench-<N>.json`` for the replicated sample, ``bench-<folder name>.json`` for a
    ``--source`` (so a run on your own images never replaces the default's figures)."""
    name = args.source.resolve().name if args.source else str(args.n)
    return OUT / f"bench-{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--env", default="local")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench-data")
    parser.add_argument("--skip-notebook", action="store_true")
    parser.add_argument("--notebook-only", action="store_true",
                        help="add the notebook baseline to bench-results/bench-N.json")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    if args.notebook_only:  # complete an earlier run's figures with the baseline
        target = results_file(args)
        figures = json.loads(target.read_text())
        print("original notebook shape in Spark (repartition(20), model per partition) ...",
              flush=True)
        figures["notebook"] = notebook_baseline(Path(figures["source"]), args.weights, workdir)
        return finish(figures, target)
    # The 1% increments add files: always to a linked copy, never to the user's SOURCE.
    source = (link_tree(args.source.resolve(), workdir / "source") if args.source
              else replicate(SAMPLE, workdir / f"fruits-{args.n}", args.n))
    n = len(image_files(source))
    lakehouse = workdir / f"lakehouse-{n}"
    shutil.rmtree(lakehouse, ignore_errors=True)
    shutil.rmtree(workdir / "notebook-features", ignore_errors=True)
    cpu = cpu_description()
    print(f"benchmark on {n} images from {source} ({os.cpu_count()} cores: {cpu})", flush=True)
    figures: dict = {"n": n, "source": str(source), "cores": os.cpu_count(), "cpu": cpu,
                     "machine": platform.platform(), "profile": args.env}

    print("pure engines (no Spark, preprocessed tensors) ...", flush=True)
    figures["pure"] = pure_engines(args.weights)
    print(f"  {figures['pure']}", flush=True)

    with PeakMemory() as memory:
        print("pipeline, cold (spark-submit, JVM starts included) ...", flush=True)
        jobs = {}
        def extra(job: str) -> tuple[str, ...]:
            return {"bronze": ("--source", str(source)), "silver": (),
                    "gold": ("--weights", args.weights)}[job]

        for job in ("bronze", "silver", "gold"):
            jobs[job] = submit(job, lakehouse, *extra(job), env_name=args.env)
        figures["pipeline_seconds"] = {**{k: round(v, 1) for k, v in jobs.items()},
                                       "total": round(sum(jobs.values()), 1)}
        gold_run = last_gold_run(lakehouse)
        figures["gold"] = {"rows": gold_run["rows_out"], "model_seconds": gold_run["model_seconds"],
                           "images_per_s": gold_run["rows_per_second"],
                           "details": json.loads(gold_run["details"])}
        print("no-op rerun ...", flush=True)
        noop = {job: round(submit(job, lakehouse, *extra(job), env_name=args.env), 1)
                for job in ("bronze", "silver", "gold")}
        figures["noop_seconds"] = noop
        increment = max(1, n // 100)
        print(f"{increment} new images (1%) ...", flush=True)
        add_new(source, increment, tag=str(int(time.time())))
        inc = {job: submit(job, lakehouse, *extra(job), env_name=args.env)
               for job in ("bronze", "silver", "gold")}
        full = sum(jobs.values())
        figures["one_percent"] = {"images": increment, "seconds": round(sum(inc.values()), 1),
                                  "per_job": {k: round(v, 1) for k, v in inc.items()},
                                  "share_of_full": round(sum(inc.values()) / full, 3)}
        print(f"{increment} more new images (1%), one application (make pipeline) ...",
              flush=True)
        add_new(source, increment, tag=f"{int(time.time())}b")
        one_app = submit("pipeline", lakehouse, "--source", str(source), "--no-pca",
                         "--weights", args.weights, env_name=args.env)
        figures["one_percent_one_app"] = {"images": increment, "seconds": round(one_app, 1),
                                          "share_of_full": round(one_app / full, 3)}
    figures["peak_memory_gb"] = round(memory.peak / 1e9, 2)
    figures["memory_sampler_cpu_seconds"] = round(memory.cpu_seconds, 1)
    figures["peak_memory_processes"] = [(name, round(size / 1e9, 2))
                                        for name, size in memory.at_peak]
    print(f"peak memory {figures['peak_memory_gb']} GB (PSS; a JVM's resident set): "
          f"{figures['peak_memory_processes']}"
          f"; the sampler used {figures['memory_sampler_cpu_seconds']} s of CPU", flush=True)
    silver_bytes = sum(p.stat().st_size for p in (lakehouse / "silver/images").glob("*.parquet"))
    figures["silver_bytes_per_image"] = round(silver_bytes / max(figures["gold"]["rows"], 1))

    from tests.benchmarks import silver_bench

    figures["silver_photos"] = silver_bench.measure(workdir, 480, args.env)
    OUT.mkdir(exist_ok=True)
    target = results_file(args)
    target.write_text(json.dumps(figures, indent=2))  # kept if the baseline fails
    if not args.skip_notebook:
        print("original notebook shape in Spark (repartition(20), model per partition) ...",
              flush=True)
        figures["notebook"] = notebook_baseline(source, args.weights, workdir)
    return finish(figures, target)


def finish(figures: dict, target: Path) -> int:
    fastest = max(figures["pure"].values(), key=lambda e: e["images_per_s"])["images_per_s"]
    gold_rate = figures["gold"]["images_per_s"] or 0.0
    figures["ratios"] = {"gold_vs_fastest_pure": round(gold_rate / fastest, 2)}
    if "notebook" in figures:
        figures["ratios"]["gold_vs_notebook"] = round(
            gold_rate / figures["notebook"]["images_per_s"], 2)

    target.write_text(json.dumps(figures, indent=2))
    print_table(figures)
    print(f"\nall figures: {target}")
    return 0


def silver_rows(results: dict) -> list[tuple[str, str]]:
    from tests.benchmarks.silver_bench import rows

    return rows(results)


def print_table(f: dict) -> None:
    rows = [
        ("machine", f"{f['cores']} cores: {f.get('cpu', '-')}"),
        ("images", f["n"]),
        *[(f"pure {k} (best batch {v['best_batch']})", f"{v['images_per_s']} img/s")
          for k, v in f["pure"].items()],
        ("notebook shape in Spark", f"{f['notebook']['images_per_s']} img/s" if "notebook" in f
         else "skipped"),
        ("gold job (model time, run log)", f"{f['gold']['images_per_s']} img/s"),
        ("gold / fastest pure engine", f["ratios"]["gold_vs_fastest_pure"]),
        ("gold / notebook", f["ratios"].get("gold_vs_notebook", "-")),
        ("pipeline cold: bronze+silver+gold", f"{f['pipeline_seconds']['total']} s "
         f"({f['pipeline_seconds']['bronze']} + {f['pipeline_seconds']['silver']} + "
         f"{f['pipeline_seconds']['gold']})"),
        ("no-op rerun per job", ", ".join(f"{k} {v} s" for k, v in f["noop_seconds"].items())),
        (f"1% new ({f['one_percent']['images']} images), three jobs",
         f"{f['one_percent']['seconds']} s = {100 * f['one_percent']['share_of_full']:.1f}% of full"),
        *([(f"1% new ({f['one_percent_one_app']['images']} images), make pipeline",
            f"{f['one_percent_one_app']['seconds']} s = "
            f"{100 * f['one_percent_one_app']['share_of_full']:.1f}% of full")]
          if "one_percent_one_app" in f else []),
        ("peak memory, all processes (PSS, JVM RSS)", f"{f.get('peak_memory_gb', '-')} GB"),
        ("silver bytes per image", f.get("silver_bytes_per_image", "-")),
        *(silver_rows(f["silver_photos"]) if "silver_photos" in f else []),
    ]
    width = max(len(str(a)) for a, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
