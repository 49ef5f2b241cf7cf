"""Benchmark 3: `edl validate` on every template costs at most 1.5x one `cfn-lint` CLI run over
the same rendered files.

The templates are rendered once with `edl render --instance local --out DIR` (one <stack>.yaml
per stack: the core stacks and the sample dataset stack, i.e. every template `edl validate`
checks). The baseline is `cfn-lint --regions <the local instance's regions> -- DIR/*.yaml`; the
measurement is `edl validate --instance local` with a cold lint cache (empty EDL_HOME/cache) and,
right after, with the warm cache. Both are subprocesses, as a user runs them; medians of N.

For information only: cfn-lint over one file per distinct body (what `edl validate` lints, as
it lints identical bodies once) shows how much of edl's margin comes from that.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench._common import CFN_LINT, EDL, LOCAL, Line, clean_env, log, median, run

GROUP = "validate"
TARGET_RATIO = 1.5


def measure(rounds: int = 3) -> tuple[list[Line], dict[str, Any]]:
    from edl.config import get_config

    regions = list(get_config().instance(LOCAL).regions)
    home = Path(tempfile.mkdtemp(prefix="edl-bench-validate-"))
    try:
        env = clean_env(home)
        out = home / "rendered"
        run([EDL, "render", "--instance", LOCAL, "--out", out], env)
        files = sorted(out.glob("*.yaml"))
        distinct: dict[str, Path] = {}
        for f in files:
            distinct.setdefault(hashlib.sha256(f.read_bytes()).hexdigest(), f)
        lint_all = [CFN_LINT, "--regions", *regions, "--", *files]
        lint_distinct = [CFN_LINT, "--regions", *regions, "--", *sorted(distinct.values())]
        validate = [EDL, "validate", "--instance", LOCAL]
        # Warm the file cache for both tools; not timed.
        run([CFN_LINT, "--version"], env, cwd=home)
        run([EDL, "--version"], env)

        cli, cli_distinct, cold, warm = [], [], [], []
        cpu: dict[str, list[float]] = {"cfn_lint": [], "edl_cold": []}  # CPU seconds
        for n in range(1, rounds + 1):
            seconds, done = run(lint_all, env, cwd=home)
            cli.append(seconds)
            cpu["cfn_lint"].append(done.cpu_seconds)
            cli_distinct.append(run(lint_distinct, env, cwd=home)[0])
            shutil.rmtree(home / "cache", ignore_errors=True)
            seconds, done = run(validate, env)
            cold.append(seconds)
            cpu["edl_cold"].append(done.cpu_seconds)
            warm.append(run(validate, env)[0])
            said = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
            log(f"round {n}/{rounds}: cfn-lint CLI {cli[-1]:.2f} s ({cpu['cfn_lint'][-1]:.2f} "
                f"CPU-s, {len(files)} files), "
                f"{cli_distinct[-1]:.2f} s ({len(distinct)} distinct); edl validate cold "
                f"{cold[-1]:.2f} s ({cpu['edl_cold'][-1]:.2f} CPU-s), warm {warm[-1]:.2f} s "
                f"({said[0].strip('✓ ')})")
    finally:
        shutil.rmtree(home, ignore_errors=True)

    baseline = f"cfn-lint CLI over the {len(files)} rendered files"
    lines = [
        Line(GROUP, f"edl validate, cold lint cache (median of {rounds})", median(cold),
             TARGET_RATIO, baseline=median(cli), baseline_name=baseline,
             runs={"edl": cold, "cfn_lint": cli}),
        Line(GROUP, f"edl validate, warm lint cache (median of {rounds})", median(warm),
             TARGET_RATIO, baseline=median(cli), baseline_name=baseline,
             runs={"edl": warm, "cfn_lint": cli}),
        Line(GROUP, "edl validate, cold, vs cfn-lint on one file per distinct body",
             median(cold), None, baseline=median(cli_distinct),
             baseline_name=f"cfn-lint CLI over {len(distinct)} files",
             runs={"edl": cold, "cfn_lint": cli_distinct}),
    ]
    details = {"files": [f.name for f in files], "distinct_bodies": len(distinct),
               "regions": regions, "cfn_lint_all_s": cli, "cfn_lint_distinct_s": cli_distinct,
               "edl_validate_cold_s": cold, "edl_validate_warm_s": warm,
               "cfn_lint_all_cpu_s": cpu["cfn_lint"],
               "edl_validate_cold_cpu_s": cpu["edl_cold"]}
    return lines, details
