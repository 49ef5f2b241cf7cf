"""Compaction, the built-in pipeline (`edl compact DATASET`): a dataset's newest state as one
snapshot update of the same dataset, so that later reads start from there instead of applying
every delta again (DESIGN §4). It runs through the same wrapper as any pipeline: the input is
the dataset as of its newest update, the output a snapshot of it, and the lineage names the
updates it folded (the input's `updates`)."""

from __future__ import annotations

from pathlib import Path

from edl.pipeline_config import Input, Output, PipelineConfig, Trigger

NAME = "compact"
INPUT, OUTPUT = "current", "compacted"


def compaction_config(dataset: str) -> PipelineConfig:
    """The compaction of `dataset` as a pipeline config (its code: `pipeline.py` here)."""
    return PipelineConfig(name=NAME, kind="pyspark", folder=Path(__file__).parent,
                          inputs=(Input(INPUT, dataset),),
                          outputs=(Output(OUTPUT, dataset, "snapshot"),),
                          trigger=Trigger("manual"),
                          description=f"{dataset}: deltas folded into one snapshot")
