"""Raw-input serving: ``preproc``'s row -> model-input steps as TensorFlow ops.

A SavedModel that takes a log's own fields (strings) must turn them into the
ids and numericals the model was trained on exactly as ``preproc`` did, or
the model sees inputs it never saw in training (training/serving skew). Each
module ports one step and is tested against ``preproc``'s own function:

- ``crc32``: CRC-32 of strings (the key of a schema's categorical values;
  TensorFlow has no CRC-32 op);
- ``numerical``: the numerical transforms (``preproc.numerical``) as step
  tables built from ``preproc``'s function itself, so equal by construction;
- ``fields``: validation and decoding of fields (Criteo's integers and hex
  values, a schema's numbers, multi-hot lists);
- ``raw_input``: what a dataset's raw rows need (``RawInputSpec``, read from
  the dataset directory: row format, vocabularies, transforms, hotness) and
  the ``tf.Module`` that maps raw columns to model inputs.

Modules are imported directly (``from models.serving.crc32 import ...``).
"""
