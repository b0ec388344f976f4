"""MobileNetV2 features: weights loading (driver), engines (workers), pure NumPy steps.

The features are the original notebook's: MobileNetV2 (alpha 1.0, 224x224, ImageNet
weights), output of the global-average-pooling layer (the include_top model's
``layers[-2]``), 1280 float32. Here the same network is built with ``include_top=False,
pooling="avg"``: the layers up to the pooling are identical and so are their weights.

Three engines compute it:

- ``tensorflow``: the Keras model, called through one ``tf.function`` (the reference);
- ``onnx``: the same Keras model converted once on the driver with tf2onnx and run by
  ONNX Runtime, about twice as fast on CPU;
- ``tflite``: the same Keras model converted once on the driver by TensorFlow's own
  TFLiteConverter (float32, no quantization) and run by LiteRT (the TensorFlow Lite
  runtime, package ai-edge-litert) with its XNNPACK kernels, faster again.

Tests hold every engine within 1e-4 of the notebook's TensorFlow computation.

Nothing here touches Spark: :mod:`gold.udf` wires it into a pandas UDF.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from common.config import ConfigError

# TensorFlow's C++ start-up chatter is not progress a user needs to see.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from common.tables import FEATURE_SIZE, IMAGE_SIZE

MODEL_NAME = "mobilenet_v2_1.0_224_avgpool"
NO_TOP_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
ONNX_OPSET = 17


class WeightsError(ConfigError):
    """The model weights cannot be had; the message says how to provide them."""


@dataclass(frozen=True)
class ModelPayload:
    """What the driver broadcasts: the engine, the model identity and its bytes.

    ``weights`` (a list of arrays) for TensorFlow; ``converted`` (the serialized ONNX or
    TFLite model) for the other engines. The identity names the weights by sha256 either
    way.
    """

    engine: str
    identity: str
    weights: list[np.ndarray] | None = None
    converted: bytes | None = None


class Engine(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, 224, 224, 3) preprocessed -> float32 (n, 1280)."""
        ...

    def run_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (n, 224, 224, 3) -> float32 (n, 1280): ``run(preprocess(images))``."""
        ...


def preprocess(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (n, 224, 224, 3) -> the model's input, as Keras' ``preprocess_input``.

    Same float32 operations in the same order as ``img_to_array`` followed by
    ``mobilenet_v2.preprocess_input`` (``x /= 127.5; x -= 1``), hence the same bits.
    """
    return preprocess_into(images, np.empty(images.shape, dtype=np.float32))


def preprocess_into(images: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`preprocess` written into ``out`` (float32, the images' shape): the uint8
    values are converted to float32 before the division, as ``astype`` would."""
    np.divide(images, np.float32(127.5), out=out)
    out -= np.float32(1.0)
    return out


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _feature_model(weights: str | None):  # noqa: ANN202 - keras.Model
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        alpha=1.0,
        include_top=False,
        pooling="avg",
        weights=weights,
    )


def _from_full_model_file(path: str):  # noqa: ANN202 - keras.Model
    """A feature model from weights of the include_top model: its ``layers[-2]``."""
    import keras

    full = keras.applications.MobileNetV2(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=1.0, include_top=True, weights=path
    )
    return keras.Model(inputs=full.input, outputs=full.layers[-2].output)


HOW_TO_PROVIDE = (
    "Provide the ImageNet weights in one of two ways: copy "
    f"{NO_TOP_FILE} (and optionally the include_top file) into $KERAS_HOME/models/ "
    "(default ~/.keras/models/), or pass --weights /path/to/weights.h5 "
    "(make gold JOB_ARGS='--weights PATH')."
)


def resolve_weights(source: str) -> tuple[Path | None, str]:
    """Find the weights file without building the model: ``(file, identity)``.

    ``imagenet`` is Keras' cached no-top file (downloaded by Keras if it can); a path is
    that file; ``random`` has no file. The identity is the model name plus the sha256 of
    the weights file, so a table row says exactly which weights made it.
    """
    if source == "random":
        return None, f"{MODEL_NAME}@random-seed-0"
    if source == "imagenet":
        path = keras_cache_dir() / NO_TOP_FILE
        if not path.is_file():
            try:
                _feature_model("imagenet")  # Keras downloads into its cache
            except Exception as exc:  # noqa: BLE001 - offline, explained below
                raise WeightsError(
                    f"cannot load the ImageNet weights: {NO_TOP_FILE} is not in "
                    f"{path.parent} and downloading it failed "
                    f"({type(exc).__name__}: {str(exc)[:200]}). " + HOW_TO_PROVIDE
                ) from exc
            if not path.is_file():
                raise WeightsError(f"Keras did not leave {path} in its cache. " + HOW_TO_PROVIDE)
    else:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist. " + HOW_TO_PROVIDE)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return path, f"{MODEL_NAME}@sha256:{digest.hexdigest()[:16]}"


def load_weights(source: str) -> tuple[list[np.ndarray], str]:
    """Load the feature model's weights on the driver: ``(arrays, identity)``.

    A path may hold the no-top or the include_top weights (then ``layers[-2]`` is
    used). ``random`` builds seeded random weights, recorded as such in the identity.
    Never falls back to random weights: a failure raises :class:`WeightsError`.
    """
    path, identity = resolve_weights(source)
    if path is None:
        import keras

        keras.utils.set_random_seed(0)
        return _feature_model(None).get_weights(), identity
    try:
        model = _feature_model(str(path))
    except Exception as no_top_error:  # noqa: BLE001 - maybe it is the full model
        try:
            model = _from_full_model_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(
                f"{path} is not a MobileNetV2 (alpha 1.0, 224) weights file: "
                f"{str(no_top_error)[:200]} / {str(exc)[:200]}. " + HOW_TO_PROVIDE
            ) from exc
    return model.get_weights(), identity


def build_payload(engine: str, source: str, cache: Path | None = None) -> ModelPayload:
    """Driver side: load the weights once and prepare what the workers need.

    With ``cache`` (a folder; ``<lakehouse>/models``), the ONNX or TFLite conversion of
    these weights is kept in ``cache/<engine>/`` and reused: an incremental run then needs
    neither TensorFlow nor the conversion.
    """
    kind = engine_kind(engine)
    if kind.convert is not None and cache is not None:
        _, identity = resolve_weights(source)
        cached = cache / engine / _cache_name(engine, identity)
        if cached.is_file():
            return ModelPayload(engine, identity, converted=cached.read_bytes())
    if kind.convert is None:
        weights, identity = load_weights(source)
        return ModelPayload(engine, identity, weights=weights)
    converted, identity = _convert(engine, source)
    if cache is not None:
        folder = cache / engine
        folder.mkdir(parents=True, exist_ok=True)
        name = _cache_name(engine, identity)
        partial = folder / f".{name}.{os.getpid()}"
        partial.write_bytes(converted)
        partial.replace(folder / name)  # atomic
    return ModelPayload(engine, identity, converted=converted)


def _convert(engine: str, source: str) -> tuple[bytes, str]:
    """The weights of ``source`` converted for ``engine``: ``(bytes, identity)``.

    Done in a child process unless TensorFlow is already loaded here. Loading the Keras
    model and converting it leaves a Python process at about 1 GB (measured: 1.02 GB PSS
    after ``build_payload`` for LiteRT), and a driver that did it in-process kept that
    memory while its featurizing workers ran: gold's driver was the pipeline's largest
    Python process (0.99-1.09 GB in ``make bench``). The child's memory is returned when
    it exits, for about 2 s more per conversion (the fresh interpreter; measured 11.6-12.7 s
    against 9.9-10.6 s). A :class:`WeightsError` raised there is raised here with its
    message.
    """
    # Already paid for: a test session, or a driver that just had Keras download the weights.
    if "tensorflow" in sys.modules:
        return _load_and_convert(engine, source)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter, not a fork of a driver that holds Spark's gateway.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_load_and_convert, engine, source).result()


def _load_and_convert(engine: str, source: str) -> tuple[bytes, str]:
    weights, identity = load_weights(source)
    convert = engine_kind(engine).convert
    assert convert is not None
    return convert(weights), identity


def _cache_name(engine: str, identity: str) -> str:
    """The file name of a conversion: the weights and every tool that shaped the bytes."""
    safe = identity.replace("@", "-").replace(":", "-")
    tools = engine_kind(engine).tools
    assert tools is not None
    return f"{safe}-{tools()}"


def _onnx_tools() -> str:
    from importlib.metadata import version

    return f"opset{ONNX_OPSET}-tf2onnx{version('tf2onnx')}.onnx"


def _tflite_tools() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tensorflow = version("tensorflow-cpu")
    except PackageNotFoundError:  # the full package instead of the CPU-only one
        tensorflow = version("tensorflow")
    return f"tensorflow{tensorflow}.tflite"


def to_onnx(weights: list[np.ndarray]) -> bytes:
    """Convert the feature model with these weights to a serialized ONNX model."""
    import tensorflow as tf
    import tf2onnx

    model = _feature_model(None)
    model.set_weights(weights)
    signature = (tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET)
    return proto.SerializeToString()


def to_tflite(weights: list[np.ndarray]) -> bytes:
    """Convert the feature model with these weights to a TFLite flatbuffer.

    float32 throughout: no ``optimizations`` are requested, so nothing is quantized (the
    fidelity tests hold the result within 1e-4 of the notebook).
    """
    import contextlib
    import io

    import tensorflow as tf

    model = _feature_model(None)
    model.set_weights(weights)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # The converter exports a SavedModel first and prints its endpoints: not for users.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


class _PreprocessingEngine:
    """``run_images`` for an engine that takes a preprocessed float32 batch."""

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - each engine's own
        raise NotImplementedError

    def run_images(self, images: np.ndarray) -> np.ndarray:
        return self.run(preprocess(images))


class TensorflowEngine(_PreprocessingEngine):
    """The Keras model with the broadcast weights, called through one ``tf.function``."""

    def __init__(self, weights: list[np.ndarray], threads: int) -> None:
        import tensorflow as tf

        _set_tf_threads(tf, threads)
        model = _feature_model(None)
        model.set_weights(weights)
        spec = tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE, 3), tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._call(batch).numpy()


class OnnxEngine(_PreprocessingEngine):
    """ONNX Runtime on the converted model, with a fixed number of threads."""

    def __init__(self, onnx: bytes, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]


class TfliteEngine:
    """LiteRT (XNNPACK kernels) on the converted model, with a fixed number of threads.

    The converted model takes any batch size; the interpreter is resized only when a
    call's size differs from the previous one (the last, shorter batch of a partition).
    """

    def __init__(self, converted: bytes, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._model = converted  # the interpreter reads the flatbuffer in place
        self._interpreter = Interpreter(model_content=converted, num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._size = -1

    def _resize(self, size: int) -> None:
        if size != self._size:
            self._interpreter.resize_tensor_input(self._input, [size, IMAGE_SIZE, IMAGE_SIZE, 3])
            self._interpreter.allocate_tensors()
            self._size = size

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._resize(len(batch))
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)  # a copy

    def run_images(self, images: np.ndarray) -> np.ndarray:
        self._resize(len(images))
        # Preprocessed straight into the interpreter's input buffer: no float32 batch to
        # allocate and copy. The view must be gone before invoke (LiteRT checks).
        preprocess_into(images, self._interpreter.tensor(self._input)())
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)  # a copy


@dataclass(frozen=True)
class EngineKind:
    """One inference engine, as the registry :data:`ENGINE_KINDS` knows it.

    ``convert`` makes its model from the weights on the driver (None: the runtime takes
    the weights themselves); ``runtime(model, threads)`` builds it on a worker from that
    model; ``best_batch(threads)`` is its best number of images per call when
    ``gold.batch_size`` is 0; ``tools()`` names, in a cached conversion's file name, the
    tool versions that shaped its bytes.
    """

    name: str
    runtime: Callable[[Any, int], Engine]
    best_batch: Callable[[int], int]
    convert: Callable[[list[np.ndarray]], bytes] | None = None
    tools: Callable[[], str] | None = None


# Best images per call, measured (gold.batch_size = 0). ONNX Runtime with one thread is
# fastest one image per call (alone, one thread: 131-140 images/s at 1 against 124-129 at
# 8; in gold on 20,391 images, two workers: 214.7 and 218.9 against 208.6 and 211.1); more
# threads need a batch to share (two threads: best at 8-16). LiteRT is fastest one image
# per call with one thread or two (alone: 150 images/s at 1 against 127 at 8 with one
# thread; 287 against 237 with two). TensorFlow pays a fixed cost per call: 32.
ENGINE_KINDS = {kind.name: kind for kind in (
    EngineKind("tensorflow", TensorflowEngine, best_batch=lambda threads: 32),
    EngineKind("onnx", OnnxEngine, best_batch=lambda threads: 1 if threads <= 1 else 8,
               convert=to_onnx, tools=_onnx_tools),
    EngineKind("tflite", TfliteEngine, best_batch=lambda threads: 1,
               convert=to_tflite, tools=_tflite_tools),
)}


def engine_kind(engine: str) -> EngineKind:
    try:
        return ENGINE_KINDS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_KINDS)}") from None


def build_engine(payload: ModelPayload, threads: int) -> Engine:
    """A worker's engine for the driver's payload, with ``threads`` threads."""
    kind = engine_kind(payload.engine)
    model = payload.weights if kind.convert is None else payload.converted
    assert model is not None
    return kind.runtime(model, threads)


def best_batch_size(engine: str, threads: int) -> int:
    """Images per model call when ``gold.batch_size`` is 0 (see :data:`ENGINE_KINDS`)."""
    return engine_kind(engine).best_batch(threads)


# What every route featurizes with: uint8 (n, 224, 224, 3) -> float32 (n, 1280).
Predict = Callable[[np.ndarray], np.ndarray]


def make_predict_fn(payload: ModelPayload, threads: int, batch_size: int = 0) -> Predict:
    """The model factory, in the shape of ``pyspark.ml.functions.predict_batch_udf``'s
    ``make_predict_fn``: called once where the model runs (a Spark worker, ``make
    classify``, each engine of the service), it builds the payload's engine with
    ``threads`` threads and returns ``predict(images) -> features``, the one batch loop
    of every route (:func:`featurize`, at most ``batch_size`` images per model call; 0:
    the engine's best). ``predict_batch_udf`` itself is not used: it takes fixed-shape
    tensor columns, and gold's workers may read the images from silver's files instead
    (:mod:`gold.silver_files`)."""
    engine = build_engine(payload, threads)
    size = batch_size or best_batch_size(payload.engine, threads)

    def predict(images: np.ndarray) -> np.ndarray:
        return featurize(engine, images, size)

    return predict


def featurize(engine: Engine, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (n, 224, 224, 3) -> float32 (n, 1280), ``batch_size`` images per model call."""
    out = np.empty((len(images), FEATURE_SIZE), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        out[start : start + len(chunk)] = engine.run_images(chunk)
    return out


_TF_THREADS_SET: list[int] = []


def _set_tf_threads(tf, threads: int) -> None:  # noqa: ANN001 - the tensorflow module
    # TensorFlow accepts thread settings only before its runtime starts, once per process.
    if _TF_THREADS_SET:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    _TF_THREADS_SET.append(threads)
