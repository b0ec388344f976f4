"""gold.classifier: the one answer computation, its files, and the species map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gold.classifier import (
    Classifier,
    SpeciesMapError,
    parse_species_map,
    prepare,
    unit_rows,
)


def three_species(min_probability: float = 0.5, min_similarity: float = 0.5,
                  scale: float = 4.0) -> Classifier:
    """Species A, B, C driven by features 0, 1, 2; labels A1, A2 (A), B1 (B), C1 (C)."""
    coefficients = np.zeros((3, 1280))
    coefficients[0, 0] = coefficients[1, 1] = coefficients[2, 2] = scale
    centroids = np.zeros((4, 1280))
    centroids[0, 0] = 1.0  # A1: feature 0 alone
    centroids[1, [0, 3]] = 1.0  # A2: features 0 and 3
    centroids[2, 1] = centroids[3, 2] = 1.0
    return Classifier(
        version="v0007", species=("A", "B", "C"), coefficients=coefficients,
        intercepts=np.zeros(3), labels=("A1", "A2", "B1", "C1"),
        label_species=np.array([0, 0, 1, 2]), centroids=unit_rows(centroids),
        min_probability=min_probability, min_similarity=min_similarity,
        feature_model="m@sha256:x", engine="tflite", top=3)


def features(*values: tuple[int, float]) -> np.ndarray:
    row = np.zeros(1280, dtype=np.float32)
    for index, value in values:
        row[index] = value
    return row


def test_prepare_takes_roots_and_scales_rows_to_unit_length() -> None:
    rows = prepare(np.stack([features((0, 9.0), (5, 16.0)), features()]))
    assert rows[0, 0] == pytest.approx(0.6) and rows[0, 5] == pytest.approx(0.8)
    assert np.count_nonzero(rows[0]) == 2 and not rows[1].any()


def test_answers_name_the_species_its_probability_the_top_and_the_closest_label() -> None:
    model = three_species()
    # (1, 0, 0, 1) -> prepared (r, 0, 0, r), r = 1/sqrt(2): logits (4r, 0, 0)
    a, b = model.answers(np.stack([features((0, 1.0), (3, 1.0)), features((1, 4.0))]))
    ea = np.exp(4 / np.sqrt(2))
    assert a["species"] == "A" and a["label"] == "A2"  # A2's centroid has feature 3 too
    assert a["probability"] == pytest.approx(ea / (ea + 2), abs=1e-6)
    assert [s for s, _ in a["top"]] == ["A", "B", "C"]
    assert a["top"][1][1] == pytest.approx(1 / (ea + 2), abs=1e-6)
    assert a["unknown"] is False and a["model_version"] == "v0007"
    e4 = np.exp(4.0)  # (0, 4, 0) -> prepared (0, 1, 0): logits (0, 4, 0)
    assert b["species"] == "B" and b["label"] == "B1" and b["unknown"] is False
    assert b["probability"] == pytest.approx(e4 / (e4 + 2), abs=1e-6)


def test_unknown_when_the_model_hesitates_or_the_photo_is_unlike_any_label() -> None:
    model = three_species(min_probability=0.6, min_similarity=0.5, scale=40.0)
    hesitant, unlike, clear = model.answers(np.stack([
        features((0, 1.0), (1, 1.0)),  # A and B equally likely: p = 0.5
        features((0, 1.0), (9, 100.0)),  # confident A, but mostly a feature no label has
        features((2, 3.0)),
    ]))
    assert hesitant["unknown"] is True and hesitant["probability"] == pytest.approx(0.5)
    assert unlike["species"] == "A" and unlike["probability"] > 0.95
    assert unlike["unknown"] is True
    assert clear["species"] == "C" and clear["unknown"] is False


def test_a_saved_version_loads_and_answers_the_same(tmp_path: Path) -> None:
    model = three_species()
    model.save(tmp_path / "v0007")
    loaded = Classifier.load(tmp_path / "v0007")
    rows = np.random.default_rng(0).random((20, 1280)).astype(np.float32)
    assert loaded.answers(rows) == model.answers(rows)
    assert (loaded.species, loaded.labels, loaded.engine) == (model.species, model.labels,
                                                               "tflite")


def test_a_version_with_views_averages_them_into_the_answer(tmp_path: Path) -> None:
    from dataclasses import replace

    model = replace(three_species(min_probability=0.0, min_similarity=0.0),
                    views=("crop70",), view_weight=0.3)
    photo = np.stack([features((1, 1.0), (0, 1.0)), features((2, 1.0))])
    # the first photo's view says A; the second's could not be made (NaN)
    views = np.stack([features((0, 1.0))[None], np.full((1, 1280), np.nan, np.float32)])
    first, second = model.answers(photo, views)
    r, e4 = 1 / np.sqrt(2), np.exp(4.0)
    own = np.exp([4 * r, 4 * r, 0]) / np.exp([4 * r, 4 * r, 0]).sum()  # A = B
    view = np.array([e4, 1, 1]) / (e4 + 2)  # A
    mixed = 0.7 * own + 0.3 * view
    assert first["species"] == "A" and first["probability"] == pytest.approx(mixed[0], abs=1e-6)
    assert first["top"][1] == ["B", pytest.approx(mixed[1], abs=1e-6)]
    assert second == three_species(0.0, 0.0).answers(photo[1:])[0]  # the photo alone
    # A photo sure enough of its species is answered alone: no view could overturn it.
    assert model.view_threshold == pytest.approx(1 / 1.4)
    sure = np.stack([features((1, 1.0), (0, 0.1))])  # own B: 0.91 > 1/1.4
    assert list(model.needs_views(np.concatenate([photo, sure]))) == [True, False, False]
    assert model.answers(sure, views[:1]) == three_species(0.0, 0.0).answers(sure)
    # "Unknown" looks at the photo's own confidence: A = B alone, however sure the view is.
    assert mixed[0] > 0.6 > own[0]
    assert replace(model, min_probability=0.6).answers(photo, views)[0] == {
        **first, "unknown": True}
    with pytest.raises(ValueError, match="averages the views"):
        model.answers(photo)  # a version with views needs them
    model.save(tmp_path / "v0007")
    loaded = Classifier.load(tmp_path / "v0007")
    assert (loaded.views, loaded.view_weight) == (("crop70",), 0.3)
    assert loaded.answers(photo, views) == [first, second]


def test_species_map_reads_labels_and_refuses_what_it_cannot_use() -> None:
    entries = parse_species_map("dataset,label,species\nfruits-360,Apple 6,Apple\n\n"
                                "grocery-store,Granny-Smith,Apple\n,Kaki,Persimmon\n")
    assert {k: (v.species, v.source) for k, v in entries.items()} == {
        "Apple 6": ("Apple", "fruits-360"), "Granny-Smith": ("Apple", "grocery-store"),
        "Kaki": ("Persimmon", "")}
    with pytest.raises(SpeciesMapError, match="label and species"):
        parse_species_map("name,fruit\na,b\n")
    with pytest.raises(SpeciesMapError, match="maps to both"):
        parse_species_map("label,species\nKiwi,Kiwi\nKiwi,Apple\n")
    with pytest.raises(SpeciesMapError, match="line 3"):
        parse_species_map("label,species\nKiwi,Kiwi\nPlum,\n")


def test_the_shipped_map_covers_every_label_of_the_data_sets() -> None:
    root = Path(__file__).resolve().parents[2]
    entries = parse_species_map((root / "conf" / "species.csv").read_text())
    assert len(entries) == 191 and len({e.species for e in entries.values()}) == 71
    assert entries["Granny-Smith"].species == entries["Apple Braeburn 1"].species == "Apple"
