"""Input pipelines: binary dataset reader, synthetic data, dataset metadata.

- ``feature_spec``: the dataset contract (file names, dtypes,
  ``feature_spec.yaml``), the only definition of the on-disk format;
- ``metadata``: ``load_metadata`` (every supported layout, file sizes
  validated), ``check_cardinalities``;
- ``binary``: ``BinaryDataset``, whole batches of one split for one rank;
- ``synthetic``: ``SyntheticDataset``, the same element structure, generated
  with TensorFlow ops; ``synthetic_labels``: its label model (numpy reference
  and TensorFlow port);
- ``slicing``: ``batch_slice``, the data-parallel slice rule shared with
  ``models/distributed``;
- ``writer``, ``pipeline``: a numpy writer for tests and benchmarks, the
  shared tf.data plumbing.

Modules are imported directly (``from models.data.binary import ...``) so that
``feature_spec``, ``metadata``, ``writer`` and ``slicing`` stay usable without
importing TensorFlow.
"""
