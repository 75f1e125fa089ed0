"""Input pipelines: binary dataset reader, synthetic data, dataset metadata.

- ``metadata``: ``load_metadata`` (ours or NVIDIA's layout, file sizes
  validated), ``check_cardinalities``;
- ``binary``: ``BinaryDataset``, whole batches of one split for one rank;
- ``synthetic``: ``SyntheticDataset``, the same element structure, generated;
- ``slicing``: ``batch_slice``, the data-parallel slice rule shared with
  ``models/distributed``;
- ``layout``, ``writer``, ``pipeline``: format names, a numpy writer for tests
  and benchmarks, the shared tf.data plumbing.

Modules are imported directly (``from models.data.binary import ...``) so that
``metadata`` and ``slicing`` stay usable without importing TensorFlow.
"""
