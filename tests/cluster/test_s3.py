"""The jobs with images and the whole lakehouse on S3 (s3a://), against a local run.

An S3-compatible server (the standalone server of the ``moto`` package) is started on
127.0.0.1 for the test and stopped afterwards, also when the test fails. The jobs run
with the ``s3-local`` profile (conf/s3-local.yaml: hadoop-aws 3.4.1, the endpoint, path
style); the only change made here is the server's port. Credentials come from the
environment only, and must not appear in any output, log or table.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests import submit
from tests.imagegen import gradient, jpeg_bytes

pytestmark = pytest.mark.long

SAMPLE = submit.ROOT.parent / "shared" / "data" / "fruits360-sample"
BUCKET = "fruits"
KEY_ID = "fruits-test-key"
SECRET = f"fruits-secret-{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"the S3 server did not start (see {log.name})")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def images() -> dict[str, bytes]:
    """Real Fruits-360 photos (3 classes x 4) when the sample is beside the repository,
    plus one file that is not an image."""
    files: dict[str, bytes] = {}
    if SAMPLE.is_dir():
        for folder in sorted(p for p in SAMPLE.iterdir() if p.is_dir())[:3]:
            for photo in sorted(folder.glob("*.jpg"))[:4]:
                files[f"{folder.name}/{photo.name}"] = photo.read_bytes()
    else:  # a clone without ../shared: synthetic photos, same plumbing
        for i in range(12):
            files[f"Label {i % 3}/img {i}.jpg"] = jpeg_bytes(gradient(seed=i))
    files["Label notes/readme.jpg"] = b"this is not a photo"
    return files


def run_layers(lakehouse: str, source: str, env_name: str) -> str:
    output = ""
    for job, args in (("bronze", ("--source", source)), ("silver", ()), ("gold", ()),
                      ("pca", ("--set", "pca.min_rows=4"))):
        code, out = submit.run(job, lakehouse, *args, env_name=env_name)
        assert code == 0, f"{job} on {env_name} failed:\n{out[-4000:]}"
        output += out
    return output


def gold_rows(lakehouse: str, env_name: str, root: str) -> dict[str, tuple[str, np.ndarray]]:
    """gold.image_features read back through `make sql` (relative path -> label, features)."""
    code, out = submit.run(
        "sql", lakehouse, "--json", "--",
        "SELECT path, label, features FROM gold.image_features", env_name=env_name,
    )
    assert code == 0, out[-3000:]
    import json

    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{\"path\"")]
    return {r["path"][len(root):]: (r["label"], np.asarray(r["features"])) for r in rows}


def test_s3_run_equals_local_run_and_keeps_credentials_out(
    s3_server: str, imagenet, tmp_path: Path, monkeypatch
) -> None:
    import boto3

    conf = tmp_path / "conf"
    shutil.copytree(submit.ROOT / "conf", conf)
    profile = conf / "s3-local.yaml"
    profile.write_text(profile.read_text().replace("http://127.0.0.1:9000", s3_server))
    monkeypatch.setenv("FRUITS_CONF_DIR", str(conf))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    local_source = tmp_path / "images"
    for name, content in images().items():
        s3.put_object(Bucket=BUCKET, Key=f"images/{name}", Body=content)
        (local_source / name).parent.mkdir(parents=True, exist_ok=True)
        (local_source / name).write_bytes(content)

    s3_lakehouse = f"s3a://{BUCKET}/lakehouse"
    output = run_layers(s3_lakehouse, f"s3a://{BUCKET}/images", "s3-local")
    run_layers(str(tmp_path / "lakehouse"), str(local_source), "local")

    # Everything landed in the bucket: every table's Delta log, the export, PCA, events.
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    for table in ("bronze/images", "silver/images", "silver/rejects", "gold/image_features",
                  "gold/image_features_pca", "ops/runs"):
        assert f"lakehouse/{table}/_delta_log/00000000000000000000.json" in keys, table
    latest = s3.get_object(Bucket=BUCKET, Key="lakehouse/exports/image_features.versions/_LATEST")
    version = latest["Body"].read().decode()
    assert any(k.startswith(f"lakehouse/exports/image_features.versions/{version}/part-")
               for k in keys)
    assert any(k.startswith("lakehouse/_spark_events/") for k in keys)
    assert "lakehouse/reports/pca/explained_variance.png" in keys

    on_s3 = gold_rows(s3_lakehouse, "s3-local", f"s3a://{BUCKET}/images/")
    local = gold_rows(str(tmp_path / "lakehouse"), "local", f"file:{local_source}/")
    expected = {name for name in images() if not name.startswith("Label notes")}
    assert set(local) == expected
    assert on_s3.keys() == local.keys()
    for name, (label, features) in local.items():
        assert on_s3[name][0] == label == name.split("/")[0]
        assert features.shape == (1280,)
        assert np.abs(on_s3[name][1] - features).max() <= 1e-4

    # The same rejects, with the same reason.
    code, out = submit.run("sql", s3_lakehouse, "--", "SELECT path, reason FROM silver.rejects",
                           env_name="s3-local")
    assert code == 0 and "not_an_image" in out and "Label notes/readme.jpg" in out, out[-2000:]

    # Credentials: in no job output, no run-log row, no object written (event logs included).
    code, runs = submit.run("sql", s3_lakehouse, "--json", "--", "SELECT * FROM ops.runs",
                            env_name="s3-local")
    assert code == 0 and runs.count('"status": "succeeded"') == 4, runs[-2000:]
    assert SECRET not in output + runs
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if key.endswith(".zstd"):
            import pyarrow as pa

            with pa.CompressedInputStream(pa.BufferReader(body), "zstd") as stream:
                body = stream.read()
        assert SECRET.encode() not in body, key
