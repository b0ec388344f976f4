"""The converted engines (ONNX Runtime, LiteRT) against the Keras model they come from,
and the driver's cache of conversions. No Spark: gold.model alone.

The ImageNet fidelity against the notebook is tests/gold/test_fidelity.py; here the
weights are seeded random ones, so the test needs no weights file.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import gold.model as model
from tests.imagegen import gradient


def _images(count: int) -> np.ndarray:
    """uint8 (count, 224, 224, 3): distinct synthetic pictures."""
    return np.stack([np.asarray(gradient(224, 224, seed=i)) for i in range(count)])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["tflite", "onnx"])
def test_converted_engine_equals_keras_and_its_conversion_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    payload = model.build_payload(engine, "random", cache=tmp_path)
    files = list((tmp_path / engine).iterdir())
    assert [f.name for f in files] == [model._cache_name(engine, payload.identity)]
    assert files[0].read_bytes() == payload.converted
    assert payload.identity == f"{model.MODEL_NAME}@random-seed-0"

    # The reference: the Keras model with the same seeded weights, no conversion.
    weights, _ = model.load_weights("random")
    reference = model.TensorflowEngine(weights, threads=1)
    images = _images(7)
    expected = reference.run(model.preprocess(images))
    assert expected.shape == (7, model.FEATURE_SIZE)
    # Seeded random weights give tiny activations (~1e-11 here), so the bound is relative:
    # 1e-5 of the largest feature (measured: ~3e-7 for both engines).
    scale = float(np.abs(expected).max())
    assert scale > 0 and np.count_nonzero(expected) > expected.size // 2

    converted = model.build_engine(payload, threads=1)
    # Preprocessed into the engine's own input buffer (LiteRT) or not: the same bits.
    assert np.array_equal(converted.run_images(images[:2]),
                          converted.run(model.preprocess(images[:2])))
    # 3 images per call: calls of 3, 3 and then 1 (a different size, so LiteRT resizes),
    # then 7 in one call; every result stays within the bound.
    for batch_size in (3, 1, 7):
        got = model.featurize(converted, images, batch_size)
        error = float(np.abs(got - expected).max())
        assert error <= 1e-5 * scale, (batch_size, error, scale)

    # A second run reuses the file: neither the weights nor the converter are touched.
    def must_not_run(*_: object) -> None:
        raise AssertionError("the cached conversion should have been used")

    monkeypatch.setattr(model, "load_weights", must_not_run)
    monkeypatch.setitem(model.ENGINE_KINDS, engine,
                        replace(model.ENGINE_KINDS[engine], convert=must_not_run))
    again = model.build_payload(engine, "random", cache=tmp_path)
    assert (again.engine, again.identity, again.converted) == (
        engine, payload.identity, payload.converted)


def test_each_engine_has_its_best_batch_size() -> None:
    assert model.best_batch_size("tflite", 1) == 1
    assert model.best_batch_size("tflite", 2) == 1
    assert model.best_batch_size("onnx", 1) == 1
    assert model.best_batch_size("onnx", 2) == 8
    assert model.best_batch_size("tensorflow", 1) == 32


def test_the_engine_registry_says_which_engines_run_a_conversion() -> None:
    assert model.ENGINE_KINDS["tensorflow"].convert is None  # runs the weights themselves
    assert {n for n, k in model.ENGINE_KINDS.items() if k.convert} == {"onnx", "tflite"}


def test_an_unknown_engine_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown engine 'torch'"):
        model.build_payload("torch", "random", cache=tmp_path)
    assert not any(tmp_path.iterdir())


# Run in a fresh interpreter: the test session itself has TensorFlow loaded, and then the
# conversion stays in-process by design.
_CHILD_CONVERSION = """
import sys
from pathlib import Path
import numpy as np
import gold.model as model

cache = Path(sys.argv[1])
payload = model.build_payload("tflite", "random", cache=cache)
assert "tensorflow" not in sys.modules, "the driver loaded TensorFlow itself"
assert payload.identity == f"{model.MODEL_NAME}@random-seed-0", payload.identity
[cached] = (cache / "tflite").iterdir()
assert cached.read_bytes() == payload.converted
images = np.stack([np.full((224, 224, 3), 40 * i, np.uint8) for i in range(1, 4)])
images[:, 50:150, 60:120, 1] = 250
got = model.featurize(model.build_engine(payload, threads=1), images, 3)

bogus = cache / "not-weights.h5"
bogus.write_bytes(b"not an HDF5 file")
try:
    model.build_payload("tflite", str(bogus), cache=cache / "other")
except model.WeightsError as exc:
    assert "is not a MobileNetV2" in str(exc), exc
else:
    raise AssertionError("a file that holds no weights was converted")

weights, _ = model.load_weights("random")  # the reference, now in this process
expected = model.TensorflowEngine(weights, threads=1).run(model.preprocess(images))
scale = float(np.abs(expected).max())
assert scale > 0
assert float(np.abs(got - expected).max()) <= 1e-5 * scale
print("ok")
"""


@pytest.mark.slow
def test_a_driver_without_tensorflow_converts_in_a_child_process(tmp_path: Path) -> None:
    """gold's driver (a fresh spark-submit Python) converts in a child process, so the
    ~1 GB of TensorFlow and the Keras model never stay in it; the conversion is the same
    model (against the Keras reference) and a bad weights file still says why."""
    result = subprocess.run([sys.executable, "-c", _CHILD_CONVERSION, str(tmp_path)],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_preprocess_into_a_buffer_is_keras_preprocessing_bit_for_bit() -> None:
    # Keras' img_to_array + mobilenet_v2.preprocess_input, as float32 NumPy steps.
    images = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    images[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [127, 128, 1]]
    expected = images.astype(np.float32)
    expected /= np.float32(127.5)
    expected -= np.float32(1.0)
    buffer = np.full(images.shape, np.nan, dtype=np.float32)
    assert model.preprocess_into(images, buffer) is buffer
    assert np.array_equal(buffer, expected) and np.array_equal(model.preprocess(images), expected)
    assert buffer[0, 0, :2].tolist() == [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
    assert np.allclose(buffer[0, 0, 2], [127 / 127.5 - 1, 128 / 127.5 - 1, 1 / 127.5 - 1],
                       rtol=0, atol=1e-7)
