"""What the lake's Spark jobs (the ingest job, the pipeline wrapper) share on their command line:
their Spark session, their log on stderr, and one way to report a failure."""

from __future__ import annotations

import logging
import os
import sys

from botocore.exceptions import BotoCoreError, ClientError

from edl.errors import EdlError


def build_spark(app_name: str, on_loopback: bool = False):
    """Glue or spark-submit hand us their session; run by hand for the local instance, Spark
    stays on the loopback like everything else there."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if on_loopback:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if on_loopback:
        builder = (builder.config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false"))
    return builder.getOrCreate()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it is replaced under test runners)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(debug: bool) -> None:
    """Progress of the job (EDL's own loggers) on stderr; other libraries stay quiet."""
    logger = logging.getLogger("edl")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


def report_failure(exc: EdlError | ClientError | BotoCoreError, debug: bool,
                   detail: str | None = None) -> int:
    """Show a job's failure as one `Error: ...` line (and `detail`); → its exit code. With
    `debug`, the exception goes on, traceback and all."""
    if debug:
        raise exc
    if isinstance(exc, EdlError):
        print(f"Error: {exc}", file=sys.stderr)
    else:
        print(f"Error: AWS call failed: {exc}", file=sys.stderr)
    if detail:
        print(detail, file=sys.stderr)
    return exc.exit_code if isinstance(exc, EdlError) else 1
