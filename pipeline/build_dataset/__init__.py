"""build-dataset: annotations + descriptions + images -> a Hugging Face dataset (Parquet shards + card).

    from pipeline.build_dataset import BuildConfig, build_dataset
    summary = build_dataset(BuildConfig(annotations="mpii", descriptions=["mpii-gpt4o"], images=DIR), store)

config.py (BuildConfig) -> index.py (which description rows are used) -> images.py (one image's work, run in
pipeline.pool) -> shards.py (rows into Parquet shards) -> card.py (schema, text statistics, README card);
stage.py runs them in that order.
"""

from pipeline.build_dataset.config import BuildConfig
from pipeline.build_dataset.stage import build_dataset

__all__ = ["BuildConfig", "build_dataset"]
