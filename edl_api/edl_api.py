"""`edl-api`: talk to the lake's REST API.

The REST API (API Gateway + Lambda in the cloud, the local runtime on the local instance) comes
with its own issue; until then this command only describes itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

DESCRIPTION = """Talk to the Enterprise Data Lake's REST API: list datasets and updates, ingest
data, run pipelines, grant and revoke access, query.

The REST API is not deployed by this version of EDL yet, so edl-api has no commands to run.
Deploy the lake with `edl` (see `edl --help`)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edl-api", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        parser.print_help()
        return 2
    parser.parse_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
