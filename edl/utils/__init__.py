"""The helper library that PySpark pipelines and Lambda functions import.

It runs in the cloud (Glue, EMR, Lambda) as well as on the local cloud, so it depends only on the
shared ground at the top of `edl` and never on deploy code or the local runtime (DESIGN §9).
"""
