"""Export of a serving SavedModel: model inputs, or a log's raw fields -> click probabilities.

The SavedModel holds only TensorFlow graphs, variables and tables, so it loads
with `tf.saved_model.load(path)` (or TF Serving) without this repository's code:

    loaded = tf.saved_model.load(path)
    p = loaded.serve(numerical, categorical)["probability"]  # [n, 1] float32
    p = loaded.signatures["serving_default"](
        numerical=numerical, categorical=categorical)["probability"]
    out = loaded.signatures["serve_raw"](I1=..., I2=..., C26=...)  # Criteo: tf.string [n] each
    out["probability"], out["reject_reason"]

Signatures (select one by name, e.g. TF Serving's ``signature_name``):

- ``serving_default`` and ``serve``: the id input below (the model's own inputs);
- ``serve_raw`` (when exported with a dataset's `RawInputSpec`): one tf.string
  ``[n]`` input per raw column, the log's field as its bytes (Criteo: ``I1``..
  ``I13``, ``C1``..``C26``; a schema: its numerical, categorical and multi-hot
  columns by name, the label left out). The fields go through the dataset's
  preprocessing inside the graph (``models.serving``: vocabularies, numerical
  transforms, hashing, multi-hot splitting, exactly as ``preproc``); the
  outputs are ``probability`` ``[n, 1]`` and ``reject_reason`` ``[n]``: empty
  for a row ``preproc`` accepts, else its reason (``bad_integer``, ...), with
  probability NaN;
- ``preprocess_raw``: the same inputs -> ``numerical``, ``categorical`` (the
  id-input signature's inputs, as ``preproc`` writes the row) and ``reject_reason``.

`numerical` is float32 ``[n, N]`` as in the binary dataset (after the dataset's
numerical transform) and `categorical` int32 ``[n, C]`` holds the table ids
(vocabulary ids, 0 for missing or rare values): one column per single-valued
table, ``hotness`` consecutive columns for a multi-hot table, padded with -1
(``models.data.feature_spec.PAD_ID``) where a sample has fewer ids; ``C`` is
the sum of the tables' hotness (``F`` without multi-hot tables). Every
negative id of a multi-hot table is padding; its vector is pooled over the
others (``sum`` or ``mean``, as trained). `dlrm_signature.json` next to the
graph states both layouts (``raw_inputs``: each raw column's name, input key
and role, and the row format to read logs with).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from models.data.feature_spec import PAD_ID
from models.serving.raw_input import RawInputError, RawInputSpec, RawPreprocessor

SIGNATURE_INFO_FILE = "dlrm_signature.json"
RAW_ENDPOINT = "serve_raw"
PREPROCESS_ENDPOINT = "preprocess_raw"


def export_saved_model(
    model: keras.Model, path: str, raw_input: RawInputSpec | None = None
) -> None:
    """Writes `model` (a single-process model with all its tables) as a SavedModel.

    Args:
        model: a built DLRM or DCNv2; its variables are captured as they are now.
        path: output directory (replaced if it exists).
        raw_input: the dataset's raw-input spec: adds the ``serve_raw`` signature.

    Raises:
        RawInputError: ``raw_input`` does not describe the model's inputs.
    """
    num_numerical = int(model.num_numerical_features)
    num_tables = int(model.num_tables)
    num_columns = int(model.num_columns(range(num_tables)))
    numerical_spec = tf.TensorSpec([None, num_numerical], tf.float32, name="numerical")
    categorical_spec = tf.TensorSpec([None, num_columns], tf.int32, name="categorical")

    def serve(numerical: tf.Tensor, categorical: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model({"numerical": numerical, "categorical": categorical})
        # Logits are float32 under every precision policy; so is the probability.
        return {"probability": tf.sigmoid(tf.cast(logits, tf.float32))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=[numerical_spec, categorical_spec])
    if raw_input is not None:
        _add_raw_endpoint(archive, model, raw_input)
    archive.write_out(path, verbose=False)
    # A plain description next to the graph, for people wiring up a server.
    info = {
        "inputs": {
            "numerical": {"dtype": "float32", "shape": [None, num_numerical]},
            "categorical": {
                "dtype": "int32",
                "shape": [None, num_columns],
                "hotness": [int(h) for h in model.hotness],
                "padding": PAD_ID,
                "combiners": list(model.combiners),
            },
        },
        "output": {"dtype": "float32", "shape": [None, 1], "meaning": "click probability"},
        "model_type": model.model_type,
        "cardinalities": [int(c) for c in model.cardinalities],
    }
    if raw_input is not None:
        info["raw_inputs"] = {
            "signature": RAW_ENDPOINT,
            "preprocess_signature": PREPROCESS_ENDPOINT,
            "dtype": "string",
            "shape": [None],
            "outputs": {"probability": [None, 1], "reject_reason": [None]},
            **raw_input.describe(),
        }
    with open(os.path.join(path, SIGNATURE_INFO_FILE), "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)


def _check_raw_input(model: keras.Model, raw_input: RawInputSpec) -> None:
    got = (len(raw_input.numerical), raw_input.cardinalities, raw_input.hotness)
    want = (
        int(model.num_numerical_features),
        tuple(int(c) for c in model.cardinalities),
        tuple(int(h) for h in model.hotness),
    )
    if got != want:
        raise RawInputError(
            f"the dataset at {raw_input.root} does not match the model: "
            f"(numerical features, table rows, hotness) {got} vs the model's {want}"
        )


def _add_raw_endpoint(
    archive: keras.export.ExportArchive, model: keras.Model, raw_input: RawInputSpec
) -> None:
    """The ``serve_raw`` endpoint: raw columns -> preproc's steps -> the model."""
    _check_raw_input(model, raw_input)
    preprocessor = RawPreprocessor(raw_input)
    archive.track(preprocessor.vocabulary)

    def serve_raw(columns: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        numerical, categorical, reject = preprocessor(columns)
        logits = model({"numerical": numerical, "categorical": categorical})
        probability = tf.sigmoid(tf.cast(logits, tf.float32))
        rejected = tf.not_equal(reject, "")[:, None]
        return {
            "probability": tf.where(rejected, tf.constant(float("nan")), probability),
            "reject_reason": reject,
        }

    def preprocess_raw(columns: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        numerical, categorical, reject = preprocessor(columns)
        return {"numerical": numerical, "categorical": categorical, "reject_reason": reject}

    spec = {c.input: tf.TensorSpec([None], tf.string, name=c.input) for c in raw_input.columns}
    archive.add_endpoint(name=RAW_ENDPOINT, fn=serve_raw, input_signature=[spec])
    archive.add_endpoint(name=PREPROCESS_ENDPOINT, fn=preprocess_raw, input_signature=[spec])
