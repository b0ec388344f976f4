"""The ASGI app (FastAPI on Starlette, served by uvicorn): the API, the page, the model.

    POST /v1/classify   a photo (multipart field ``photo``, or the raw body with an image
                        content type) -> the JSON of ``make classify`` plus ``ms``
    GET  /v1/model      the serving version, its species and its evaluation figures
    GET  /healthz       ``{"status": "ok", "model_version": ...}``
    GET  /              the page (take or choose a photo, see the answer)
    GET  /docs          the OpenAPI description (FastAPI's own)

Uploads are never trusted: the size is checked against ``serve.max_upload_bytes`` from
the Content-Length header before reading, and while reading for a chunked body; the
decoding is silver's (:func:`common.images.decode_for_model`, bomb and size guards
included) and a refusal carries ``silver.rejects``' reason code. No stack trace reaches a
client. One log line per request: time, method, path, status, bytes, species, ms.

The serving version is re-read every ``serve.reload_seconds`` (and at once on SIGHUP);
a new one is loaded beside the old and swapped in one assignment, so no request fails
during the switch. Requests run in the thread pool, decoding and inference in parallel:
a pool of single-threaded model engines, one per core, each used by one request at a
time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from common.config import Config, local_path
from common.images import (
    NOT_AN_IMAGE,
    UNKNOWN_FORMAT,
    ImageRejected,
)
from gold.classifier import Classifier
from gold.classify import PhotoClassifier
from gold.model import make_predict_fn
from gold.predict import load_serving, report_root, serving_state

log = logging.getLogger("serve")
PAGE = Path(__file__).with_name("page.html")
UNSUPPORTED = (NOT_AN_IMAGE, UNKNOWN_FORMAT)  # 415; every other refusal is 422


class TooLarge(Exception):
    pass


class ModelHolder:
    """The serving :class:`PhotoClassifier`, swapped whole when another version serves,
    and a pool of its model engines: one single-threaded engine per core
    (``serve.engines``), each used by one request at a time (an engine is not
    thread-safe), so concurrent requests run on all cores."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.size = config.serve.engines or os.cpu_count() or 1
        self.reload_lock = threading.Lock()
        self.photos, self.engines = self._load(PhotoClassifier(config, threads=1))

    def _load(self, photos: PhotoClassifier) -> tuple[PhotoClassifier, queue.Queue]:
        engines: queue.Queue = queue.Queue()
        engines.put(photos.predict)
        for _ in range(self.size - 1):
            engines.put(make_predict_fn(photos.payload, 1))
        return photos, engines

    @property
    def classifier(self) -> Classifier:
        return self.photos.classifier

    def reload(self) -> bool:
        """Load the serving version if it changed; True when it did."""
        with self.reload_lock:
            state = serving_state(self.config.lakehouse)
            if not state or state["version"] == self.classifier.version:
                return False
            new = self.photos.with_classifier(load_serving(self.config.lakehouse))
            if new.predict is self.photos.predict:
                self.photos = new  # one assignment: a request uses the old or the new whole
            else:  # features of other weights: new engines too, swapped in one assignment
                self.photos, self.engines = self._load(new)
            log.info("now serving classifier %s", new.classifier.version)
            return True

    def answer(self, content: bytes) -> dict:
        photos, engines = self.photos, self.engines
        pixels = photos.pixels(content)  # decoded before an engine is taken
        engine = engines.get()
        try:
            features = photos.features_of(pixels, engine)
        finally:
            engines.put(engine)
        return photos.answer(features)


def _error(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"error": reason, "message": message}, status_code=status)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: Config, holder: ModelHolder | None = None) -> FastAPI:
    """The app for ``config``'s lakehouse (raises NoModelError when none is trained)."""
    holder = holder or ModelHolder(config)
    limit = config.serve.max_upload_bytes
    app = FastAPI(title="Fruits! classifier", version="1",
                  description="What fruit is this? Upload a photo, get the species.")
    app.state.holder = holder

    @app.middleware("http")
    async def one_line_per_request(request: Request, call_next):  # noqa: ANN001, ANN202
        started = time.perf_counter()
        request.state.species = "-"
        try:
            response = await call_next(request)
        except Exception:  # noqa: BLE001 - logged here, never shown to the client
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = _error(500, "internal", "internal error; the service goes on")
        ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %s bytes species=%s %.1f ms", request.method, request.url.path,
                 response.status_code, request.headers.get("content-length", "-"),
                 request.state.species, ms)
        return response

    @app.post("/v1/classify", summary="Classify one photo",
              description="The photo as multipart/form-data (field `photo`) or as the raw "
                          "body with an image/* content type.")
    async def classify(request: Request) -> JSONResponse:
        started = time.perf_counter()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data" and not kind.startswith("image/") and (
                kind != "application/octet-stream"):
            return _error(415, "unsupported_media_type",
                          "send the photo as multipart/form-data (field photo) or as the "
                          "body with an image/* content type")
        try:
            body = await _read_limited(request, limit)
        except TooLarge:
            return _error(413, "too_large", f"the upload is over {limit} bytes "
                          "(serve.max_upload_bytes)")
        if kind == "multipart/form-data":
            request._body = body  # noqa: SLF001 - Starlette parses the cached body
            try:
                form = await request.form(max_files=1, max_fields=5)
            except Exception as exc:  # noqa: BLE001 - a malformed form is the client's
                return _error(400, "bad_form", f"cannot read the form: {type(exc).__name__}")
            upload = form.get("photo")
            if upload is None or isinstance(upload, str):
                return _error(400, "no_photo", "the form has no file field named photo")
            body = await upload.read()
        if not body:
            return _error(400, "empty", "the photo is empty (0 bytes)")
        try:
            answer = await run_in_threadpool(holder.answer, body)
        except ImageRejected as exc:
            status = 415 if exc.reason in UNSUPPORTED else 422
            return _error(status, exc.reason, str(exc))
        request.state.species = "unknown" if answer["unknown"] else answer["species"]
        answer["ms"] = round((time.perf_counter() - started) * 1000, 1)
        return JSONResponse(answer)

    @app.get("/v1/model", summary="The serving model version")
    async def model() -> dict:
        c = holder.classifier
        metrics_file = local_path(report_root(config.lakehouse, c.version)) / "metrics.json"
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        return {"version": c.version, "species": list(c.species),
                "pinned": serving_state(config.lakehouse).get("pinned", False),
                "evaluation": metrics.get("sources", {}),
                "feature_model": c.feature_model, "engine": c.engine}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok", "model_version": holder.classifier.version}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.on_event("startup")
    async def watch_the_serving_version() -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        try:
            loop.add_signal_handler(signal.SIGHUP, wake.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): the polling alone

        async def watch() -> None:
            while True:
                try:
                    await asyncio.wait_for(wake.wait(), config.serve.reload_seconds)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
                try:
                    await run_in_threadpool(holder.reload)
                except Exception:  # noqa: BLE001 - keep serving the model it has
                    log.exception("could not load the new serving version; still serving %s",
                                  holder.classifier.version)

        app.state.watcher = asyncio.create_task(watch())

    return app
