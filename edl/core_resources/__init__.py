"""Code that runs in the cloud: the REST API's Lambda handlers and the lake's Spark jobs.

It depends only on the shared ground at the top of `edl` and on `edl.utils` (DESIGN §9).
"""
