"""Hybrid parallelism over Horovod: the only package that imports Horovod.

- ``placement``: ``plan_placement`` (pure, greedy, largest first) and the
  ``Placement`` it returns; ``embedding_table_bytes``, ``embedding_budget_bytes``;
- ``comm``: the ``Communicator`` protocol, ``LocalCommunicator`` (world size
  1, no Horovod), ``HorovodCommunicator`` (ordered collectives, failure
  timeouts), ``make_communicator``;
- ``hybrid``: ``HybridParallel``, the model-parallel tables / data-parallel
  MLPs wrapper used by the trainer and the evaluator;
- ``watchdog``: ``StepWatchdog``, which ends a process whose training made no
  step for ``--step_timeout_s`` (a rank stuck before its next collective).

The data-parallel slice rule, ``batch_slice``, lives in ``models.data.slicing``
because the input pipeline needs it too. Modules are imported directly
(``from models.distributed.hybrid import HybridParallel``) so that the
placement planner stays usable without TensorFlow, and Horovod is imported
only when a ``HorovodCommunicator`` is created.
"""
