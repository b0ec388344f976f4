"""Typed, frozen configuration loaded from ``conf/base.yaml`` plus ``conf/<env>.yaml``.

``base.yaml`` holds every key with its default and meaning; a profile holds only what
differs (its values win, mappings are merged key by key). An unknown key, a value of the
wrong type or an impossible value is a :class:`ConfigError` that names the key and the
file, raised before any Spark session or table is touched.

Precedence, lowest first: the profile file, ``--set section.key=value`` overrides, then the
named CLI flags (``--source``, ``--lakehouse``, ...) that the jobs expose.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from common.storage import join_path, local_path, storage_of

# The profiles: conf/ of the source tree, or FRUITS_CONF_DIR where the code runs from an
# installed wheel (EMR: the bootstrap action puts them in /opt/fruits/conf).
CONF_DIR = Path(os.environ.get("FRUITS_CONF_DIR") or Path(__file__).resolve().parent.parent / "conf")


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message says what and where."""


@dataclass(frozen=True)
class SparkSettings:
    master: str
    driver_memory: str
    executor_memory: str
    shuffle_partitions: int
    snapshot_partitions: int
    event_log_dir: str
    driver_java_options: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The whole profile. ``lakehouse`` is the one root every other path derives from."""

    env: str
    lakehouse: str
    source: str
    spark: SparkSettings
    # The layers' sections, each defined next to its layer and found through SECTIONS.
    bronze: Any  # bronze.settings.BronzeSettings
    silver: Any  # silver.settings.SilverSettings
    gold: Any  # gold.settings.GoldSettings
    pca: Any  # gold.settings.PcaSettings
    classifier: Any  # gold.settings.ClassifierSettings
    serve: Any  # gold.settings.ServeSettings

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    @property
    def export_path(self) -> str:
        return self.gold.export_path or join_path(self.lakehouse, "exports", "image_features")

    @property
    def species_map_path(self) -> Path:
        return Path(self.classifier.species_map or CONF_DIR / "species.csv")

    @property
    def event_log_dir(self) -> str:
        return self.spark.event_log_dir or join_path(self.lakehouse, "_spark_events")




BASE_PROFILE = "base"

# The sections a layer package defines next to its code, with their rules (a
# ``check(config, file)`` method run when a profile loads): section -> "module:class".
# Found by name, so common never imports a layer.
SECTIONS = {
    "bronze": "bronze.settings:BronzeSettings",
    "silver": "silver.settings:SilverSettings",
    "gold": "gold.settings:GoldSettings",
    "pca": "gold.settings:PcaSettings",
    "classifier": "gold.settings:ClassifierSettings",
    "serve": "gold.settings:ServeSettings",
}


def _section_classes() -> dict[str, type]:
    """The classes of :data:`SECTIONS`: section name -> settings class."""
    classes = {}
    for section, target in SECTIONS.items():
        module, _, name = target.partition(":")
        classes[section] = getattr(importlib.import_module(module), name)
    return classes


def available_profiles(conf_dir: Path = CONF_DIR) -> list[str]:
    """The profiles a user can pick (``base`` is the layer under them, not one of them)."""
    return sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != BASE_PROFILE)


def _read_profile(file: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must hold a mapping of settings, not {type(raw).__name__}")
    return raw


def _layer(base: dict[str, Any], overlay: dict[str, Any], file: Path, prefix: str = "",
           ) -> dict[str, Any]:
    """``overlay`` on ``base``: its values win; nested sections merge key by key; a key the
    base does not have is an error (``spark.extra`` is free-form)."""
    merged = dict(base)
    for key, value in overlay.items():
        dotted = prefix + str(key)
        if key not in base and prefix != "spark.extra.":
            raise ConfigError(f"{file}: unknown setting {dotted!r} (not in base.yaml)")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _layer(base[key], value, file, dotted + ".")
        else:
            merged[key] = value
    return merged


def load_config(
    env: str = "local",
    overrides: Mapping[str, Any] | None = None,
    *,
    conf_dir: Path = CONF_DIR,
) -> Config:
    """Load profile ``env`` and apply ``overrides`` (``{"gold.batch_size": 32, ...}``).

    Local relative paths (lakehouse, source, export) are made absolute against the
    current directory, so every process of a run agrees on them.
    """
    file = conf_dir / f"{env}.yaml"
    if not file.is_file():
        names = ", ".join(available_profiles(conf_dir)) or "none"
        raise ConfigError(f"unknown profile {env!r}: no file {file} (profiles: {names})")
    raw = _read_profile(file)
    base_file = conf_dir / f"{BASE_PROFILE}.yaml"
    if env != BASE_PROFILE and base_file.is_file():
        raw = _layer(_read_profile(base_file), raw, file)
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value, file)
    config = _build(Config, {"env": env, **raw}, str(file), prefix="")
    return _absolutize(_validate(config, str(file)))


def parse_override(text: str) -> tuple[str, Any]:
    """``"gold.batch_size=32"`` -> ``("gold.batch_size", 32)`` (value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any, file: Path) -> None:
    if dotted.startswith("spark.extra."):
        # The rest is one Spark key, dots included: spark.extra.spark.executor.cores=2
        spark = dict(raw.get("spark") or {})
        spark["extra"] = {**(spark.get("extra") or {}), dotted[len("spark.extra."):]: value}
        raw["spark"] = spark
        return
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ConfigError(f"unknown setting {dotted!r} (not a section in {file})")
        node[part] = child = dict(child)
        node = child
    if parts[-1] not in node and not (len(parts) > 1 and parts[-2] == "extra"):
        raise ConfigError(f"unknown setting {dotted!r} (no such key in {file})")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, file: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    if cls is Config:
        hints.update(_section_classes())
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{file}: unknown setting(s) {', '.join(prefix + u for u in unknown)}")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"{file}: missing setting(s) {', '.join(prefix + m for m in missing)}")
    values = {n: _coerce(hints[n], raw[n], file, prefix + n) for n in names}
    return cls(**values)


def _coerce(hint: Any, value: Any, file: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, file, key + ".")
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{file}: {key} must be a list of strings, got {value!r}")
        return tuple(value)
    if origin in (collections.abc.Mapping, dict):
        if value is None:
            return types.MappingProxyType({})
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {key} must be a mapping, got {value!r}")
        return types.MappingProxyType({str(k): str(v) for k, v in value.items()})
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{file}: {key} must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{file}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{file}: {key} must be text, got {value!r}")
        return str(value)
    raise ConfigError(f"{file}: {key}: unsupported type {hint!r}")  # pragma: no cover


MIN_JVM_MEMORY = 512 * 1024**2
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def memory_bytes(text: Any) -> int | None:
    """A JVM/Spark memory size ("512m", "4g", "1024k") in bytes; None if not one."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgt]?)b?\s*", str(text).lower())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def _check_local_folder(key: str, path: str, file: str) -> None:
    """``path`` is a folder, or can become one: neither it nor a parent is a file."""
    here = local_path(os.path.expanduser(path)).absolute()
    for folder in (here, *here.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == here else f"is inside the file {folder}"
                raise ConfigError(f"{file}: {key} {path} {what}, not a folder")
            return


def _validate(config: Config, file: str) -> Config:
    def positive(key: str, value: int) -> None:
        if value <= 0:
            raise ConfigError(f"{file}: {key} must be greater than 0, got {value}")

    if not config.lakehouse:
        raise ConfigError(f"{file}: lakehouse must name a folder or URI")
    if storage_of(config.lakehouse).direct:
        _check_local_folder("lakehouse", config.lakehouse, file)
    for key, value in [
        ("spark.shuffle_partitions", config.spark.shuffle_partitions),
        ("spark.snapshot_partitions", config.spark.snapshot_partitions),
    ]:
        positive(key, value)
    for key, value in [("spark.driver_memory", config.spark.driver_memory),
                       ("spark.executor_memory", config.spark.executor_memory)]:
        size = memory_bytes(value)
        if size is None:
            raise ConfigError(
                f"{file}: {key} must be a JVM memory size such as 512m or 4g, got {value!r}"
            )
        if size < MIN_JVM_MEMORY:
            raise ConfigError(
                f"{file}: {key} is {value}; Spark needs at least 512m (it keeps 300 MB for "
                "itself and refuses to start below 1.5 times that)"
            )
    for name in SECTIONS:
        getattr(config, name).check(config, file)
    return config


def _absolutize(config: Config) -> Config:
    def absolute(path: str) -> str:
        return storage_of(path).absolute(path) if path else path

    gold = dataclasses.replace(config.gold, export_path=absolute(config.gold.export_path))
    spark = dataclasses.replace(config.spark, event_log_dir=absolute(config.spark.event_log_dir))
    return config.replace(
        lakehouse=absolute(config.lakehouse),
        source=absolute(config.source),
        gold=gold,
        spark=spark,
    )


def with_cli_values(config: Config, **values: str | None) -> Config:
    """Apply the named CLI flags that were given (None = not given); paths made absolute."""
    changes: dict[str, Any] = {}
    gold_changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in ("lakehouse", "source"):
            changes[key] = value
        elif key in ("weights", "engine"):
            gold_changes[key] = value
        elif key == "export":
            gold_changes["export_path"] = value
        else:  # pragma: no cover - programming error
            raise KeyError(key)
    if gold_changes:
        changes["gold"] = dataclasses.replace(config.gold, **gold_changes)
    return _absolutize(_validate(config.replace(**changes), "command line"))
