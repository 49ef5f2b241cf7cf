"""Runs one Lambda invocation in its own process, as Lambda's Python runtime would.

    python -m edl.local.lambda_host --code DIR --handler handler.handle --result FILE < event.json

The local Lambda runner (`lambda_runner.py`) starts it with the function's environment: the
credentials of the project's role, `AWS_REGION`, `AWS_ENDPOINT_URL` (the local cloud),
`EDL_INSTANCE`, `AWS_LAMBDA_FUNCTION_*`, `_X_AMZN_REQUEST_ID` and the project's own variables. It
imports the handler from DIR, calls it with the event and a context object, and writes to FILE
what Lambda returns: `{"result": ...}`, or `{"errorMessage", "errorType", "stackTrace"}` when the
handler raised. What the handler prints or logs goes to stderr, which the runner keeps as the
invocation's log. The runner enforces the timeout by ending the process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path


class LambdaContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, timeout_seconds: float) -> None:
        env = os.environ
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.invoked_function_arn = env.get("EDL_FUNCTION_ARN", "")
        self.aws_request_id = env.get("_X_AMZN_REQUEST_ID", "")
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _configure_logging(request_id: str) -> None:
    """Lambda's Python runtime logs as `[LEVEL] time request-id message`, at WARNING for the
    root logger unless the handler sets it; INFO here so that the example's lines show."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t{request_id}\t%(message)s",
        "%Y-%m-%dT%H:%M:%S"))
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def invoke(code: Path, handler: str, event: object, timeout_seconds: float) -> dict:
    """Import and call the handler; → what Lambda would answer."""
    module_name, _, function_name = handler.rpartition(".")
    sys.path.insert(0, str(code))
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        result = function(event, LambdaContext(timeout_seconds))
        json.dumps(result)   # Lambda answers JSON: a result that is not fails the invocation
        return {"result": result}
    except Exception as exc:  # noqa: BLE001 - the handler's error is the invocation's answer
        frames = traceback.extract_tb(exc.__traceback__)
        traceback.print_exc(file=sys.stderr)
        return {"errorMessage": str(exc), "errorType": type(exc).__name__,
                "stackTrace": traceback.format_list(frames)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edl.local.lambda_host")
    parser.add_argument("--code", type=Path, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    request_id = os.environ.get("_X_AMZN_REQUEST_ID", "")
    _configure_logging(request_id)
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    event = json.loads(sys.stdin.read() or "{}")
    answer = invoke(args.code, args.handler, event, args.timeout)
    tmp = args.result.with_suffix(".tmp")
    tmp.write_text(json.dumps(answer, default=str))
    tmp.replace(args.result)
    print(f"END RequestId: {request_id}", file=sys.stderr)
    print(f"REPORT RequestId: {request_id}\tDuration: "
          f"{(time.monotonic() - started) * 1000:.2f} ms", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
