"""Export of a serving SavedModel: model inputs -> click probabilities.

The SavedModel holds only TensorFlow graphs and variables, so it loads with
`tf.saved_model.load(path)` (or TF Serving) without this repository's code:

    loaded = tf.saved_model.load(path)
    p = loaded.serve(numerical, categorical)["probability"]  # [n, 1] float32
    p = loaded.signatures["serving_default"](
        numerical=numerical, categorical=categorical)["probability"]

`numerical` is float32 ``[n, N]`` as in the binary dataset (after the dataset's
numerical transform) and `categorical` int32 ``[n, C]`` holds the table ids
(vocabulary ids, 0 for missing or rare values): one column per single-valued
table, ``hotness`` consecutive columns for a multi-hot table, padded with -1
(``models.data.feature_spec.PAD_ID``) where a sample has fewer ids; ``C`` is
the sum of the tables' hotness (``F`` without multi-hot tables). Every
negative id of a multi-hot table is padding; its vector is pooled over the
others (``sum`` or ``mean``, as trained). `dlrm_signature.json` next to the
graph states the layout.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from models.data.feature_spec import PAD_ID

SIGNATURE_INFO_FILE = "dlrm_signature.json"


def export_saved_model(model: keras.Model, path: str) -> None:
    """Writes `model` (a single-process model with all its tables) as a SavedModel.

    Args:
        model: a built DLRM or DCNv2; its variables are captured as they are now.
        path: output directory (replaced if it exists).
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
    with open(os.path.join(path, SIGNATURE_INFO_FILE), "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)
