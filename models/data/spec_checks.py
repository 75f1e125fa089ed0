"""Parsing and validation of ``feature_spec.yaml`` (the contract is ``feature_spec``).

Both functions take and return plain values (``spec_types``), so this module sits
below ``feature_spec`` and never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.data.spec_types import (
    CATEGORICAL_CHANNEL,
    CATEGORICAL_DTYPES,
    CHANNELS,
    COMBINERS,
    LABEL_CHANNEL,
    LABEL_DTYPE,
    NUMERICAL_CHANNEL,
    NUMERICAL_DTYPE,
    SPLIT_BINARY,
    Chunk,
    DatasetError,
    Feature,
)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_sections(raw: Any, where: str) -> tuple[dict, dict, dict, dict]:
    """The four sections of a spec as read from YAML, type-checked."""
    if not isinstance(raw, dict):
        raise DatasetError(
            f"{where}: expected a mapping with feature_spec, channel_spec, source_spec"
        )
    missing = [k for k in ("feature_spec", "channel_spec", "source_spec") if k not in raw]
    if missing:
        raise DatasetError(f"{where}: missing sections {missing}")
    features = {}
    if not isinstance(raw["feature_spec"], dict) or not raw["feature_spec"]:
        raise DatasetError(f"{where}: feature_spec must map feature names to their properties")
    for name, props in raw["feature_spec"].items():
        at = f"{where}: feature {name!r}"
        if not isinstance(props, dict) or "dtype" not in props:
            raise DatasetError(f"{at}: needs a dtype")
        try:
            dtype = np.dtype(str(props["dtype"]))
        except TypeError as error:
            raise DatasetError(f"{at}: unknown dtype {props['dtype']!r}") from error
        cardinality, hotness = props.get("cardinality"), props.get("hotness", 1)
        if cardinality is not None and (not is_int(cardinality) or cardinality < 1):
            raise DatasetError(f"{at}: cardinality must be an int >= 1, got {cardinality!r}")
        if not is_int(hotness) or hotness < 1:
            raise DatasetError(f"{at}: hotness must be an int >= 1, got {hotness!r}")
        combiner = props.get("combiner")
        if combiner not in (None, *COMBINERS):
            raise DatasetError(f"{at}: combiner must be one of {COMBINERS}, got {combiner!r}")
        features[str(name)] = Feature(
            str(name), dtype.newbyteorder("<"), cardinality, hotness, combiner
        )
    channels = raw["channel_spec"]
    if not isinstance(channels, dict) or sorted(channels) != sorted(CHANNELS):
        got = sorted(channels) if isinstance(channels, dict) else channels
        raise DatasetError(f"{where}: channel_spec must have exactly {list(CHANNELS)}, got {got}")
    channels = {c: tuple(str(n) for n in channels[c] or ()) for c in CHANNELS}
    sources = {}
    if not isinstance(raw["source_spec"], dict) or not raw["source_spec"]:
        raise DatasetError(f"{where}: source_spec must map split names to lists of chunks")
    for split, chunks in raw["source_spec"].items():
        if not isinstance(chunks, list):
            raise DatasetError(f"{where}: source_spec[{split!r}] must be a list of chunks")
        parsed = []
        for i, chunk in enumerate(chunks):
            at = f"{where}: source_spec[{split!r}][{i}]"
            if not isinstance(chunk, dict) or chunk.get("type") != SPLIT_BINARY:
                raise DatasetError(f"{at}: only chunks of type {SPLIT_BINARY!r} are supported")
            names, files = chunk.get("features"), chunk.get("files")
            if not isinstance(names, list) or not names:
                raise DatasetError(f"{at}: features must be a non-empty list")
            if not isinstance(files, list) or len(files) != 1:
                raise DatasetError(f"{at}: exactly one file per chunk is supported, got {files!r}")
            parsed.append(Chunk(tuple(str(n) for n in names), str(files[0])))
        sources[str(split)] = tuple(parsed)
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DatasetError(f"{where}: metadata must be a mapping, got {type(metadata).__name__}")
    return features, channels, sources, metadata


def validate_spec(
    features: Mapping[str, Feature],
    channels: Mapping[str, tuple[str, ...]],
    sources: Mapping[str, tuple[Chunk, ...]],
    metadata: Mapping[str, Any],
    where: str,
) -> None:
    """The model's constraints on channels, dtypes and chunks (``FeatureSpec.validate``)."""
    names = [n for c in CHANNELS for n in channels[c]]
    unknown = [n for n in names if n not in features]
    if unknown:
        raise DatasetError(f"{where}: channel_spec names undefined features {unknown}")
    if len(set(names)) != len(names):
        raise DatasetError(f"{where}: a feature appears twice in channel_spec")
    unused = [n for n in features if n not in names]
    if unused:
        raise DatasetError(f"{where}: features {unused} belong to no channel")
    if len(channels[LABEL_CHANNEL]) != 1:
        raise DatasetError(f"{where}: the label channel needs exactly one feature")
    label = features[channels[LABEL_CHANNEL][0]]
    if label.dtype != LABEL_DTYPE:
        raise DatasetError(f"{where}: label {label.name!r} must be bool, got {label.dtype}")
    for f in (features[n] for n in channels[NUMERICAL_CHANNEL]):
        if f.dtype != NUMERICAL_DTYPE:
            raise DatasetError(
                f"{where}: numerical feature {f.name!r} must be float16, got {f.dtype}"
            )
    allowed = {d.name for d in CATEGORICAL_DTYPES}
    for f in (features[n] for n in channels[CATEGORICAL_CHANNEL]):
        if f.dtype.name not in allowed:
            raise DatasetError(
                f"{where}: categorical feature {f.name!r} has dtype {f.dtype.name}, "
                f"expected one of {sorted(allowed)}"
            )
        if f.cardinality is None:
            raise DatasetError(f"{where}: categorical feature {f.name!r} needs a cardinality")
        if f.cardinality - 1 > np.iinfo(f.dtype).max:
            raise DatasetError(
                f"{where}: categorical feature {f.name!r} has {f.cardinality} rows but dtype "
                f"{f.dtype.name} holds ids up to {np.iinfo(f.dtype).max}"
            )
    numerical = channels[NUMERICAL_CHANNEL]
    for split, chunks in sources.items():
        at = f"{where}: source_spec[{split!r}]"
        stored = [n for c in chunks for n in c.features]
        if sorted(stored) != sorted(features):
            missing = sorted(set(features) - set(stored))
            extra = sorted(set(stored) - set(features))
            raise DatasetError(
                f"{at}: every feature must be stored exactly once "
                f"(missing {missing}, undefined {extra}, {len(stored)} entries)"
            )
        for chunk in chunks:
            first = chunk.features[0]
            if first in numerical and chunk.features != numerical:
                raise DatasetError(
                    f"{at}: the numerical features must form one chunk in channel order, "
                    f"got {list(chunk.features)} in {chunk.file}"
                )
            if first not in numerical and len(chunk.features) != 1:
                raise DatasetError(
                    f"{at}: {chunk.file} holds {list(chunk.features)}; label and categorical "
                    "features need one file each"
                )
    rows = metadata.get("rows")
    if rows is not None and (
        not isinstance(rows, dict)
        or sorted(rows) != sorted(sources)
        or not all(is_int(n) and n >= 0 for n in rows.values())
    ):
        raise DatasetError(
            f"{where}: metadata.rows must give an int >= 0 for each split "
            f"{sorted(sources)}, got {rows!r}"
        )
