"""Options every command shares.

No `from __future__ import annotations` in option modules: argparse-dataclass reads the field
types at run time, and it understands `Optional[X]`, not `X | None`.
"""

import os
from dataclasses import dataclass, field
from typing import Optional


def _default_instance() -> str:
    return os.environ.get("EDL_INSTANCE", "local")


@dataclass(kw_only=True)
class CommonOptions:
    instance: str = field(default_factory=_default_instance, metadata={
        "args": ["-i", "--instance"],
        "help": "the lake instance: local (default, or $EDL_INSTANCE), dev01, uat, prod"})
    profile: Optional[str] = field(default=None, metadata={
        "help": "the AWS profile to act as (default: $AWS_PROFILE; for the local instance a "
                "user of the local cloud, else its platform admin)"})
    debug: bool = field(default=False, metadata={"help": "show tracebacks and the debug log"})
