"""The stored features equal the original notebook's computation within 1e-4.

The reference below is the notebook's code path, verbatim in substance: the
include_top ImageNet model cut at ``layers[-2]``, ``Image.open(...).resize([224, 224])``,
``img_to_array``, ``preprocess_input``, ``predict``. It shares no code with the product.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE
from tests.gold.helpers import bronze_silver, gold, gold_features, last_run
from tests.imagegen import gradient, jpeg_bytes, write


def notebook_features(contents: list[bytes]) -> np.ndarray:
    from keras import Model
    from keras.applications.mobilenet_v2 import MobileNetV2, preprocess_input
    from keras.preprocessing.image import img_to_array

    model = MobileNetV2(weights="imagenet", include_top=True, input_shape=(224, 224, 3))
    new_model = Model(inputs=model.input, outputs=model.layers[-2].output)
    arrays = [img_to_array(Image.open(io.BytesIO(c)).resize([224, 224])) for c in contents]
    return new_model.predict(preprocess_input(np.stack(arrays)), verbose=0)


def fidelity_source(tmp_path: Path) -> dict[str, bytes]:
    files = {f"Synthetic {i}/g{i}.jpg": jpeg_bytes(gradient(90 + 7 * i, 100, seed=i))
             for i in range(4)}
    if SAMPLE.is_dir():  # real photos too, when the shared sample is beside the repo
        for folder in sorted(SAMPLE.iterdir())[:3]:
            first = sorted(folder.iterdir())[0]
            files[f"{folder.name}/{first.name}"] = first.read_bytes()
    for name, content in files.items():
        write(tmp_path / "src" / name, content)
    return files


@pytest.mark.slow
# LiteRT and ONNX Runtime at their default (0: one image per call with one thread per
# worker) and at a larger size; TensorFlow at an odd size, so that a short last batch is
# covered too.
@pytest.mark.parametrize(("engine", "batch_size", "used"),
                         [("tflite", 0, 1), ("tflite", 4, 4), ("onnx", 0, 1), ("onnx", 16, 16),
                          ("tensorflow", 3, 3)])
def test_features_match_the_notebook(
    spark, lakehouse: Path, tmp_path: Path, imagenet: None, engine: str, batch_size: int,
    used: int,
) -> None:
    files = fidelity_source(tmp_path)
    bronze_silver(tmp_path / "src", lakehouse)
    assert gold(lakehouse, "--engine", engine, "--set", f"gold.batch_size={batch_size}") == 0

    stored = gold_features(spark, lakehouse)
    names = sorted(files)
    reference = notebook_features([files[n] for n in names])
    for name, expected in zip(names, reference):
        row = stored[f"file:{tmp_path / 'src' / name}"]
        vector = np.asarray(row.features, dtype=np.float32)
        assert vector.shape == (1280,)
        assert np.abs(vector - expected).max() <= 1e-4, (name, np.abs(vector - expected).max())
        assert row.label == name.split("/")[0]
        assert row.model.startswith("mobilenet_v2_1.0_224_avgpool@sha256:")
    details = last_run(spark, lakehouse, "gold")["details"]
    assert (details["engine"], details["batch_size"]) == (engine, used)
