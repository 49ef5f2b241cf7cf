"""A helper module beside pipeline.py: the pipeline imports it like any module of its folder."""

PHASE_ORDER = {"I": 1, "II": 2, "III": 3, "IV": 4}


def phase_rank_sql(column: str) -> str:
    """A SQL expression ranking a phase column (unknown phases last)."""
    cases = " ".join(f"WHEN '{phase}' THEN {rank}" for phase, rank in PHASE_ORDER.items())
    return f"CASE {column} {cases} ELSE 99 END"
