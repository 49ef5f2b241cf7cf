"""The ingest job: one source (S3, HTTPS, SFTP) into one immutable update of a dataset.

    python -m edl.core_resources.pipelines.ingest --instance local --dataset clinical_trials \\
        --source s3://sanofi-datalake-drop-local-sensitive-us-east-1/batch1.zip --kind snapshot

How the work is spread. Spark here cannot read or write `s3a://` (no hadoop-aws; DESIGN §8), and
on Glue/EMR the same code must run unchanged, so the job does not use Spark's file I/O at all.
Spark is the scheduler: the driver lists the source and the raw files, and
`sparkContext.parallelize(items, len(items)).map(task)` runs one task per file on the executors.
Each task opens its own S3 connection (pyarrow's S3 filesystem, or boto3) from a small picklable
`S3Access`, and streams one file S3 → S3 (or HTTPS/SFTP → S3): unzipping while it reads, and
converting with pyarrow's streaming readers into a `ParquetWriter`, so memory stays flat however
large the file. A plain S3 object (not an archive) is not streamed into the raw folder but copied
there server-side, and its conversion checksums it while reading it: its bytes cross the network
once. The driver never touches data, only lists, schemas and counts. Locally the
executors are Spark's Python workers (`local[N]`); on Glue or EMR they are the cluster's nodes —
the only difference is `S3Access.endpoint_url` (the local cloud's URL, `None` in AWS).

Modules: `sources` (where files come from), `archives` (safe unpacking, zip-bomb limits),
`formats` (which format, parse options), `convert` (one file → one parquet part), `tasks` (what
one Spark task does), `job` (the driver: the update's lifecycle, DESIGN §3 steps 0–4),
`__main__` (the command line).
"""
