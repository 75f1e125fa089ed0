"""The Spark engine of ``python -m preproc --engine spark`` (PySpark from requirements-spark.txt).

``engine`` is the driver, ``tasks`` what the executors run (the local engine's
per-unit functions, no PySpark import), ``session`` the SparkContext set-up.
"""
