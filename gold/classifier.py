"""The classifier's one computation: 1280 features -> species, probability, top, unknown.

NumPy only, no Spark: the same :class:`Classifier` object answers for ``gold.predictions``
(inside a pandas UDF, gold/predict_job.py), for ``make classify`` (gold/classify.py) and
for the HTTP service, so the same photo gets the same answer everywhere. Training (Spark
ML, gold/train_job.py) produces its parameters; :func:`Classifier.save` and
:func:`Classifier.load` keep them as ``params.npz`` + ``classifier.json`` in the model
version's folder.

The model: multinomial logistic regression on the features after :func:`prepare` (the
square root of each feature, then the row scaled to unit length: the "power
normalisation" usual for pooled CNN features, which evens out the few large activations
a cluttered store photo has), so ``probabilities`` is a softmax of
``prepare(features) @ W.T + b``. A version trained with views (``views``, e.g. the centre
70% of the photo enlarged) also averages at prediction: the answer's probabilities are
``(1 - view_weight)`` x the photo's plus ``view_weight`` x the mean of its views', each
view featurized by the same engine (one more inference per view). Only for a photo
whose own top probability is under :attr:`Classifier.view_threshold`: above it, no
view could change the species (its margin over any other is at least
``view_weight / (1 - view_weight)``), and the photo is answered alone, without the
inference. "Unknown" combines
two scores of the photo's own features: its top probability before any view is averaged
in (low when the model hesitates between species) and the cosine similarity to the
nearest training label's mean feature vector (low for things unlike any training photo,
however confident the softmax is). Each has a threshold calibrated on held-out known
photos; below either, the answer is ``unknown``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARAMS_FILE = "params.npz"
META_FILE = "classifier.json"


class SpeciesMapError(ValueError):
    """The species map file cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class SpeciesEntry:
    species: str
    source: str  # the map's ``dataset`` column ("fruits-360", "grocery-store"), or ""


def parse_species_map(text: str, name: str = "species map") -> dict[str, SpeciesEntry]:
    """CSV text with columns ``label``, ``species`` (and optionally ``dataset``) ->
    ``{label: SpeciesEntry}``. Blank lines are skipped; a label given twice with two
    different species is an error."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"label", "species"} <= set(reader.fieldnames):
        raise SpeciesMapError(f"{name}: needs a header with the columns label and species "
                              f"(got {reader.fieldnames})")
    entries: dict[str, SpeciesEntry] = {}
    for line, row in enumerate(reader, start=2):
        label, species = (row.get("label") or "").strip(), (row.get("species") or "").strip()
        if not label and not species:
            continue
        if not label or not species:
            raise SpeciesMapError(f"{name}, line {line}: both label and species are needed")
        entry = SpeciesEntry(species, (row.get("dataset") or "").strip())
        if label in entries and entries[label].species != species:
            raise SpeciesMapError(f"{name}, line {line}: label {label!r} maps to both "
                                  f"{entries[label].species!r} and {species!r}")
        entries[label] = entry
    if not entries:
        raise SpeciesMapError(f"{name}: no label is mapped to a species")
    return entries


def load_species_map(path: Path) -> dict[str, SpeciesEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpeciesMapError(f"cannot read the species map {path}: {exc}") from exc
    return parse_species_map(text, str(path))


def prepare(features: np.ndarray) -> np.ndarray:
    """float (n, 1280) -> float64 (n, 1280): ``sqrt`` of each feature, rows scaled to unit
    length (all-zero rows stay zero). gold/train_job.py:with_prepared computes the same in
    Spark."""
    roots = np.sqrt(np.maximum(np.asarray(features, dtype=np.float64), 0.0))
    return unit_rows(roots)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Scores:
    """Per photo: the species probabilities, its own confidence, the nearest label and
    its similarity."""

    probabilities: np.ndarray  # (n, species), the views averaged in
    confidence: np.ndarray  # (n,) the photo's own top probability (no views): a score
    nearest_label: np.ndarray  # (n,) index into Classifier.labels, within the best species
    similarity: np.ndarray  # (n,) cosine similarity to the nearest label of any species


@dataclass(frozen=True)
class Classifier:
    """A trained model version: everything an answer needs, as NumPy arrays."""

    version: str
    species: tuple[str, ...]
    coefficients: np.ndarray  # (species, 1280) float64
    intercepts: np.ndarray  # (species,)
    labels: tuple[str, ...]  # the training labels
    label_species: np.ndarray  # (labels,) index into species
    centroids: np.ndarray  # (labels, 1280) unit mean prepared vector of each label
    min_probability: float  # unknown below this top probability (the photo's own) ...
    min_similarity: float  # ... or below this similarity to the nearest label
    feature_model: str  # gold's model identity the features must come from
    engine: str  # the engine gold used (classify and the service use the same)
    top: int = 3
    views: tuple[str, ...] = ()  # averaged at prediction (common.images.VIEWS)
    view_weight: float = 0.0  # their share of the answer's probabilities

    @property
    def view_threshold(self) -> float:
        """The views count for a photo whose own top probability is below this:
        ``1 / (2 (1 - view_weight))``. At or above it the top species leads every other
        by ``view_weight / (1 - view_weight)`` or more, which no view can overturn."""
        return 1.0 / (2.0 * (1.0 - self.view_weight)) if self.views else 0.0

    def needs_views(self, features: np.ndarray) -> np.ndarray:
        """bool (n,): which photos' answers depend on their views."""
        if not self.views:
            return np.zeros(len(features), dtype=bool)
        return self._probabilities(prepare(features)).max(axis=1) < self.view_threshold

    def scores(self, features: np.ndarray, views: np.ndarray | None = None) -> Scores:
        """float32/64 (n, 1280), and for a version with :attr:`views` their features
        (n, len(views), 1280) -> :class:`Scores`. A row of ``views`` that is NaN (a
        photo that does not need them, :meth:`needs_views`, or whose views could not be
        made) is answered from the photo alone. The two "unknown" scores are the
        photo's own."""
        x = prepare(features)
        probabilities = self._probabilities(x)
        confidence = probabilities.max(axis=1)
        if self.views:
            if views is None or views.shape[:2] != (len(features), len(self.views)):
                raise ValueError(f"classifier {self.version} averages the views "
                                 f"{list(self.views)}: give their features, "
                                 f"(n, {len(self.views)}, 1280)")
            have = ~np.isnan(views).any(axis=(1, 2)) & (confidence < self.view_threshold)
            if have.any():
                seen = views[have]
                mean = self._probabilities(prepare(seen.reshape(-1, seen.shape[-1]))).reshape(
                    len(seen), len(self.views), -1).mean(axis=1)
                probabilities[have] = ((1 - self.view_weight) * probabilities[have]
                                       + self.view_weight * mean)
        similarities = x @ self.centroids.T  # (n, labels), both of unit length
        best = probabilities.argmax(axis=1)
        same_species = self.label_species[None, :] == best[:, None]
        nearest = np.where(same_species, similarities, -np.inf).argmax(axis=1)
        return Scores(probabilities, confidence, nearest, similarities.max(axis=1))

    def _probabilities(self, prepared: np.ndarray) -> np.ndarray:
        return softmax(prepared @ self.coefficients.T + self.intercepts)

    def answers(self, features: np.ndarray, views: np.ndarray | None = None) -> list[dict]:
        """One answer per row (``views``: as for :meth:`scores`): ``species``,
        ``probability``, ``unknown``, ``top`` (the ``top`` best ``[species,
        probability]``), ``label`` (the closest training label of the best species),
        ``model_version``."""
        scores = self.scores(features, views)
        out = []
        order = np.argsort(-scores.probabilities, axis=1, kind="stable")[:, : self.top]
        for i, ranked in enumerate(order):
            p = scores.probabilities[i]
            best = int(ranked[0])
            unknown = bool(scores.confidence[i] < self.min_probability
                           or scores.similarity[i] < self.min_similarity)
            out.append({
                "species": self.species[best],
                "probability": round(float(p[best]), 6),
                "unknown": unknown,
                "top": [[self.species[int(j)], round(float(p[j]), 6)] for j in ranked],
                "label": self.labels[int(scores.nearest_label[i])],
                "model_version": self.version,
            })
        return out

    def save(self, folder: Path) -> None:
        """``params.npz`` then ``classifier.json`` (written last: a version is complete
        when its ``classifier.json`` exists)."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / PARAMS_FILE, "wb") as handle:
            np.savez(handle, coefficients=self.coefficients, intercepts=self.intercepts,
                     label_species=self.label_species, centroids=self.centroids)
        meta = {
            "version": self.version, "species": list(self.species), "labels": list(self.labels),
            "min_probability": self.min_probability, "min_similarity": self.min_similarity,
            "feature_model": self.feature_model, "engine": self.engine, "top": self.top,
            "views": list(self.views), "view_weight": self.view_weight,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Classifier:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        with np.load(folder / PARAMS_FILE) as arrays:
            params = {k: arrays[k] for k in arrays.files}
        return cls(
            version=meta["version"], species=tuple(meta["species"]),
            coefficients=params["coefficients"], intercepts=params["intercepts"],
            labels=tuple(meta["labels"]), label_species=params["label_species"],
            centroids=params["centroids"], min_probability=float(meta["min_probability"]),
            min_similarity=float(meta["min_similarity"]), feature_model=meta["feature_model"],
            engine=meta["engine"], top=int(meta["top"]),
            # versions from before prediction averaged views have neither key
            views=tuple(meta.get("views", ())), view_weight=float(meta.get("view_weight", 0.0)),
        )
