"""Enrolment per site. The wrapper reads `trials` (clinical_trials, as of its newest update),
calls run(), checks `by_site` and writes it as a new snapshot update of trials_by_site."""

from phases import phase_rank_sql
from pyspark.sql import functions as F


def run(spark, inputs, params):
    trials = inputs["trials"].where(F.col("enrolled") >= params.get("min_enrolled", 0))
    by_site = trials.groupBy("site").agg(
        F.count("*").alias("trials"),
        F.sum("enrolled").alias("enrolled"),
        F.expr(f"max({phase_rank_sql('phase')})").alias("latest_phase_rank"),
        F.array_sort(F.collect_set("phase")).alias("phases"),
    )
    return {"by_site": by_site}
