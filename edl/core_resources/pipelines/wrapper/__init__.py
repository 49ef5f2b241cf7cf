"""The pipeline wrapper: runs a pipeline's code between the lake's reads and commits (DESIGN §4).

`python -m edl.core_resources.pipelines.wrapper --pipeline-dir DIR` is the job script of a
pipeline's Glue job and what the local runtime's job runner runs: `run.PipelineRun` reads the
inputs, runs the code, checks and commits the outputs (`output`, `checks`) and keeps lineage
(`edl.utils.lineage`).
"""
