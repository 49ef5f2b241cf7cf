"""The local cloud's Athena: Athena's own JSON API on the AWS endpoint, with real results.

moto answers Athena's API with empty results (DESIGN §8). On the local cloud the runtime answers
the query calls itself, so `edl-api query`, the AWS CLI and PyAthena get the rows Athena would
give them (DESIGN §6; the catalog layout is `edl.utils.catalog`'s):

- `sql.py`: Athena's dialect (Trino) parsed with sqlglot: one read-only query or a clear refusal,
  syntax errors with line and column, the tables it reads, and its text in DuckDB's dialect;
- `tables.py`: a table reference resolved through Glue with the caller's credentials: a
  partitioned parquet table becomes a pyarrow dataset over its partitions (their key values as
  constant columns), a view is expanded from its Presto view text;
- `engine.py`: one query run by DuckDB over those datasets, read from S3 with pyarrow as the
  caller, cancellable, counting the bytes of the parquet files it reads;
- `results.py`: Athena's types and value strings, `GetQueryResults` pages, the result CSV;
- `callers.py`: who signed a call (SigV4 against the local cloud's keys) and whether their IAM
  policies allow `athena:<action>` on the workgroup (moto's own policy evaluation);
- `service.py`: `LocalAthena`, the executions and the thread pool that runs them;
- `api.py`: `AthenaApi`, the JSON API as WSGI middleware around moto's Athena backend, wired in
  by `edl.local.runtime.MotoService`.

Workgroups stay moto's (CreateWorkGroup goes to moto's backend, which the state journal keeps);
query executions are EDL's, in memory, and never journalled: a restart must not re-run a query.
"""
