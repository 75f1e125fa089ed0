"""Criteo TSV -> split binary dataset (``python -m preproc``; format in DEVELOPERS.md).

Flow (``pipeline.run``): ``units`` plans newline-aligned byte ranges (whole
``.gz`` files) -> pass 1 (``count_pass``: ``fast_parse`` fast path, ``parse``
exact path, value counts, rejects, accepted rows kept) -> ``vocab_pass`` (one
vocabulary per table) -> pass 2 (``transform_pass``: ids, split, shuffle
buckets) -> ``assemble`` (split files) -> ``metadata``. ``workdir`` holds the
done markers that make an interrupted run resumable.
"""
