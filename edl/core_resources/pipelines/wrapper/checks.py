"""Quality checks of a pipeline's outputs, run on each output before it is committed.

`rows_at_least: N`, `not_null: [columns]`, `unique: [columns]` (DESIGN §4). All of an output's
checks are one Spark job: one aggregation counts the rows, the nulls of every `not_null` column,
and each `unique` key set's distinct values. A failed check is a `CheckFailedError` naming the
output, the check and what was found; the wrapper then fails every output update of the run.
"""

from __future__ import annotations

from edl.errors import EdlError
from edl.pipeline_config import Check


class CheckFailedError(EdlError):
    """An output did not pass one of its checks: nothing of the run is committed."""


def run_checks(frame, alias: str, dataset: str, checks: tuple[Check, ...]) -> int:
    """Run `checks` over `frame` (the output `alias`, for `dataset`); → its row count.
    Raises `CheckFailedError` for the first check that fails, in the config's order."""
    from pyspark.sql import functions as F

    columns = set(frame.columns)
    for check in checks:
        if check.name in ("not_null", "unique"):
            missing = [c for c in check.value if c not in columns]
            if missing:
                raise CheckFailedError(
                    f"output {alias} ({dataset}): check {check.describe()} names column(s) "
                    f"{', '.join(missing)} that the output does not have",
                    hint=f"its columns: {', '.join(frame.columns)}")
    measures = [F.count(F.lit(1)).alias("rows")]
    for n, check in enumerate(checks):
        if check.name == "not_null":
            measures += [F.sum(F.col(c).isNull().cast("long")).alias(f"nulls_{n}_{i}")
                         for i, c in enumerate(check.value)]
        elif check.name == "unique":
            # a struct is never null, so keys with null columns are counted like any other
            key = F.struct(*[F.col(c) for c in check.value])
            measures.append(F.count_distinct(key).alias(f"distinct_{n}"))
    found = frame.agg(*measures).first().asDict()
    rows = int(found["rows"])
    for n, check in enumerate(checks):
        what = f"output {alias} ({dataset}): check {check.describe()} failed"
        if check.name == "rows_at_least" and rows < check.value:
            raise CheckFailedError(f"{what}: it has {rows} row(s)",
                                   hint="nothing of the run was committed; look at its inputs")
        if check.name == "not_null":
            nulls = {c: int(found[f"nulls_{n}_{i}"] or 0) for i, c in enumerate(check.value)}
            bad = {c: k for c, k in nulls.items() if k}
            if bad:
                raise CheckFailedError(
                    f"{what}: " + ", ".join(f"{c} is null in {k} row(s)" for c, k in bad.items()),
                    hint="nothing of the run was committed")
        if check.name == "unique":
            distinct = int(found[f"distinct_{n}"])
            if distinct < rows:
                raise CheckFailedError(
                    f"{what}: {rows - distinct} row(s) repeat a key already seen "
                    f"({distinct} distinct key(s) in {rows} rows)",
                    hint="nothing of the run was committed")
    return rows
