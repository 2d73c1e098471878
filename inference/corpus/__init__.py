"""Corpus-scale classification on Ray Data: the model in process in a pool of actors, results
in partitioned Parquet, resumable by record key. `python -m inference corpus --help`."""
