"""The lake's own Spark jobs (ingest; compaction and the pipeline wrapper live beside it)."""
