"""The Makefile passes user values to the programs as typed: no shell injection, spaces
and dollars kept. The real targets run, with the spark-submit line replaced by printf."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ECHO = 'SUBMIT=printf "<%s>\\n"'


def arguments(target: str, *values: str, cwd: Path = ROOT) -> list[str]:
    run = subprocess.run(["make", "--no-print-directory", "-s", "-o", "setup", target, ECHO,
                          *values], cwd=cwd, capture_output=True, text=True, check=True)
    return [line[1:-1] for line in run.stdout.splitlines() if line.startswith("<")]


def test_a_query_with_quotes_is_one_argument_and_runs_nothing(tmp_path: Path) -> None:
    query = f'SELECT 1"; touch {tmp_path}/pwned; echo "$(id) `id` \'x\''
    args = arguments("sql", f"Q={query}")
    assert args[-2:] == ["--", query]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("lakehouse, source", [
    ("lake x", "/data/my photos"),
    ("l$x", "/data/$HOME/a;b"),
    ("it's", 'say "cheese"'),
])
def test_paths_with_spaces_dollars_and_quotes_reach_the_job_as_typed(lakehouse: str,
                                                                      source: str) -> None:
    args = arguments("bronze", f"LAKEHOUSE={lakehouse}", f"SOURCE={source}")
    assert args[:3] == ["bronze/job.py", "--source", source]
    assert args[args.index("--lakehouse") + 1] == lakehouse
    run = arguments("run", f"LAKEHOUSE={lakehouse}", f"SOURCE={source}")
    assert run[:3] == ["common/pipeline.py", "--source", source]
    unicode = arguments("bronze", "LAKEHOUSE=/lakes/Pomme d'été ü", "SOURCE=/data/Äpfel $x")
    assert unicode[:3] == ["bronze/job.py", "--source", "/data/Äpfel $x"]
    assert unicode[unicode.index("--lakehouse") + 1] == "/lakes/Pomme d'été ü"


def test_photos_reach_classify_through_the_environment_split_as_a_shell_would(
        tmp_path: Path) -> None:
    printer = ("PY=python3 -c 'import os, shlex; [print(\"<\" + p + \">\") for p in "
               "shlex.split(os.environ[\"FRUITS_PHOTOS\"])]'")
    photos = f"\"{tmp_path}/my photo.jpg\" '{tmp_path}/it'\"'\"'s\" ü.heic' $(touch {tmp_path}/x)"
    assert arguments("classify", printer, f"PHOTOS={photos}") == [
        f"{tmp_path}/my photo.jpg", f"{tmp_path}/it's\" ü.heic", "$(touch", f"{tmp_path}/x)"]
    assert not (tmp_path / "x").exists()
