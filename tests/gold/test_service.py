"""The HTTP service: the API through FastAPI's test client, then a real uvicorn server on
127.0.0.1 (bad uploads, a model switch under load) and the page in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from common.config import load_config
from gold.classify import main as classify_main
from tests.gold.service_helpers import build_served_lakehouse, fruit, jpeg

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(config, classifier) of a lakehouse whose serving model knows drawn fruit."""
    from tests.conftest import keras_home_with_weights

    if keras_home_with_weights() is None:
        message = "the ImageNet weights are not in $KERAS_HOME/models: see README"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    lakehouse = tmp_path_factory.mktemp("served") / "lakehouse"
    config = load_config("local", {"lakehouse": str(lakehouse),
                                   "serve.max_upload_bytes": 400_000,
                                   "silver.max_pixels": 4_000_000})
    return config, build_served_lakehouse(config)


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    from gold.service.app import create_app

    with TestClient(create_app(served[0])) as test_client:
        yield test_client


KEYS = {"species", "probability", "unknown", "top", "label", "model_version", "ms"}


def test_a_photo_as_a_form_or_as_the_body_gets_the_species(client) -> None:
    photo = jpeg(fruit("Banana", 300))
    by_form = client.post("/v1/classify", files={"photo": ("b.jpg", photo, "image/jpeg")})
    by_body = client.post("/v1/classify", content=photo, headers={"content-type": "image/jpeg"})
    for response in (by_form, by_body):
        assert response.status_code == 200
        body = response.json()
        assert set(body) == KEYS
        assert body["species"] == "Banana" and body["unknown"] is False
        assert body["top"][0] == ["Banana", body["probability"]] and len(body["top"]) == 3
        assert body["label"] == "Banana drawn" and body["model_version"] == "v0001"
    strip = lambda b: {k: v for k, v in b.items() if k != "ms"}  # noqa: E731
    assert strip(by_form.json()) == strip(by_body.json())


def test_the_service_answers_as_make_classify(client, served, tmp_path: Path, capsys) -> None:
    photos = {f"{s}.jpg": jpeg(fruit(s, 400 + i)) for i, s in enumerate(("Apple", "Kiwi"))}
    for name, content in photos.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "notes.jpg").write_bytes(b"shopping list: apples")
    assert classify_main([str(tmp_path), "--lakehouse", served[0].lakehouse]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(line["path"]).name: line for line in lines}
    assert by_name["notes.jpg"] == {"path": str(tmp_path / "notes.jpg"), "error": "not_an_image",
                                    "message": by_name["notes.jpg"]["message"]}
    for name, content in photos.items():
        answer = client.post("/v1/classify", content=content,
                             headers={"content-type": "image/jpeg"}).json()
        answer.pop("ms")
        assert {"path": str(tmp_path / name), **answer} == by_name[name]
    assert by_name["Apple.jpg"]["species"] == "Apple" and by_name["Kiwi.jpg"]["species"] == "Kiwi"


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "kind", "status", "reason"), [
    (b"", "image/jpeg", 400, "empty"),
    (b"plain words, not a photo", "image/jpeg", 415, "not_an_image"),
    (b"\x00\x01binary junk" * 10, "image/png", 415, "unknown_format"),
    (jpeg(fruit("Apple", 1))[:3000], "image/jpeg", 422, "truncated"),
    ("bomb", "image/png", 422, "decompression_bomb"),
    ("big", "image/jpeg", 413, "too_large"),
    (b"{}", "application/json", 415, "unsupported_media_type"),
])
def test_bad_uploads_get_a_status_and_a_reason_never_a_trace(
    client, content, kind, status, reason
) -> None:
    if content == "bomb":  # 2,500 x 2,000 = 5 Mpx against silver.max_pixels of 4 Mpx here
        content = _png(2500, 2000)
    if content == "big":
        content = b"\xff\xd8" + b"\x00" * 500_000  # over serve.max_upload_bytes (400 kB)
    response = client.post("/v1/classify", content=content, headers={"content-type": kind})
    assert (response.status_code, response.json()["error"]) == (status, reason)
    assert "Traceback" not in response.text and "File \"" not in response.text


def test_a_form_without_the_photo_field_is_refused(client) -> None:
    response = client.post("/v1/classify", files={"picture": ("a.jpg", b"x", "image/jpeg")})
    assert (response.status_code, response.json()["error"]) == (400, "no_photo")


def test_model_health_page_and_openapi(client, served) -> None:
    model = client.get("/v1/model").json()
    assert (model["version"], model["species"]) == ("v0001", ["Apple", "Banana", "Kiwi"])
    assert client.get("/healthz").json() == {"status": "ok", "model_version": "v0001"}
    page = client.get("/")
    assert page.status_code == 200 and 'accept="image/*"' in page.text
    assert 'capture="environment"' in page.text
    assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


# --- a real server on 127.0.0.1 ---------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, content: bytes, kind: str = "image/jpeg") -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/classify", data=content,
                                     headers={"content-type": kind}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(served, tmp_path: Path):
    """`python -m gold.service` on a free loopback port, on a copy of the lakehouse."""
    config, _ = served
    lakehouse = tmp_path / "lakehouse"
    shutil.copytree(config.lakehouse, lakehouse)
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "gold.service", "--lakehouse", str(lakehouse),
         "--port", str(port), "--set", "serve.reload_seconds=1",
         "--set", "serve.max_upload_bytes=400000", "--set", "silver.max_pixels=4000000"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/healthz")
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        yield port, process, lakehouse, tmp_path / "serve.log"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_a_thousand_bad_uploads_leave_the_service_answering_and_its_memory_flat(
    server
) -> None:
    port, process, _, log = server
    good = jpeg(fruit("Kiwi", 500))
    assert _post(port, good)[1]["species"] == "Kiwi"
    bad = [(b"", "image/jpeg", 400), (b"not an image at all", "image/jpeg", 415),
           (good[:2000], "image/jpeg", 422), (_png(2500, 2000), "image/png", 422),
           (b"\xff\xd8" + b"\x00" * 500_000, "image/jpeg", 413), (b"{}", "text/plain", 415)]
    for content, kind, status in bad * 5:  # warm-up: allocators reach their working size
        assert _post(port, content, kind)[0] == status
    before = _rss_kb(process.pid)
    for i in range(1000):
        content, kind, status = bad[i % len(bad)]
        code, body = _post(port, content, kind)
        assert code == status and "error" in body
    grown_mb = (_rss_kb(process.pid) - before) / 1024
    assert grown_mb <= 50, f"memory grew by {grown_mb:.1f} MB"
    code, body = _post(port, good)
    assert (code, body["species"]) == (200, "Kiwi")
    lines = log.read_text().splitlines()
    assert sum(" /v1/classify " in line for line in lines) >= 1000
    assert not any("Traceback" in line for line in lines)


def test_a_promoted_version_is_served_within_seconds_without_a_failed_request(
    server, served
) -> None:
    port, _, lakehouse, _ = server
    config = load_config("local", {"lakehouse": str(lakehouse)})
    photo = jpeg(fruit("Apple", 600))
    codes: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            code, body = _post(port, photo)
            codes.append(code)
            versions.append(body.get("model_version", "?"))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    build_served_lakehouse(config, "v0002", rename={"Apple": "Pomme"})  # pinned
    promoted = time.monotonic()
    while _get(port, "/v1/model")["version"] != "v0002":
        assert time.monotonic() - promoted < 10, "not picked up within 10 s"
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert set(codes) == {200}
    assert versions[0] == "v0001" and versions[-1] == "v0002"
    assert _post(port, photo)[1]["species"] == "Pomme"


def test_the_page_in_a_real_browser_shows_the_species(server, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        message = "Debian's chromium and chromium-driver are needed: make browser"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = server[0]
    photo = tmp_path / "my banana.jpg"
    photo.write_bytes(jpeg(fruit("Banana", 700)))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=412,915"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        assert "What fruit is this?" in driver.find_element(By.TAG_NAME, "h1").text
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        WebDriverWait(driver, 30).until(
            expected_conditions.presence_of_element_located((By.ID, "species")))
        answer = driver.find_element(By.ID, "answer")
        assert driver.find_element(By.ID, "species").text == "Banana"
        assert answer.get_attribute("data-state") == "known"
        assert "Next: " in answer.text and "sure" in answer.text
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
