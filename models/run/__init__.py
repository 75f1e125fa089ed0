"""The steps of one `dlrm_main.py` run, in data-flow order.

`checks` (launcher and world size), `data` (this rank's splits), `budget`
(tables on ranks within the memory budget), `model` (the placed model, restored
or synchronised), `xla` (how much of the step XLA compiles), `modes` (train,
eval and inference over the assembled `Job`), `hooks` (the training loop's
progress, evaluations and checkpoints) and `results` (the results log).
"""
