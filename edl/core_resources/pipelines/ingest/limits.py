"""The limits an ingest holds its input to, against archive bombs and unbounded reads.

`ArchiveLimits` travels with the request to every task (`--max-ratio`, `--max-total-gib`, … on
the job's command line; tests hand in small ones). The checks here need no archive stream:
`check_update_totals` over the sizes of an update's files (the job runs it on the source's
listing before it reads anything, and on the raw files once they are in), and `zip_bomb_check`
over a zip's declared entry sizes, for the unpacker and for readers that open a zip themselves
(the workbook inside an `.xlsx`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from edl.core_resources.pipelines.ingest.errors import ArchiveBombError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ArchiveLimits:
    """What one update may expand to (see the module docstring); `max_line_bytes` bounds what a
    reader holds for one record of a file that is not split into lines (JSON lines)."""

    max_ratio: float = 200.0
    ratio_grace_bytes: int = 64 * MiB
    max_total_bytes: int = 100 * GiB
    max_members: int = 100_000
    max_depth: int = 3
    max_file_bytes: int = 50 * GiB
    max_header_bytes: int = 1 * MiB
    max_line_bytes: int = 256 * MiB


def check_update_totals(sizes: Iterable[int | None], limits: ArchiveLimits, what: str) -> None:
    """Refuse an update whose files (sizes; None: not known yet) are more than `max_members` or
    add up to more than `max_total_bytes`. `what` names them in the error."""
    count, total = 0, 0
    for size in sizes:
        count += 1
        total += size or 0
    if count > limits.max_members:
        raise ArchiveBombError(f"{what}: {count} files, more than {limits.max_members} in one "
                               "update", hint="split the source into several updates")
    if total > limits.max_total_bytes:
        raise ArchiveBombError(
            f"{what}: {size_text(total)}, more than {size_text(limits.max_total_bytes)} in one "
            "update", hint="split the source into several updates")


def zip_bomb_check(archive: zipfile.ZipFile, size: int, limits: ArchiveLimits,
                   label: str) -> None:
    """Refuse a zip of `size` bytes whose entries declare more than the limits allow."""
    members = [i for i in archive.infolist() if not i.is_dir()]
    if len(members) > limits.max_members:
        raise ArchiveBombError(f"{label}: more than {limits.max_members} files",
                               hint="split the source into several updates")
    declared = sum(i.file_size for i in members)
    largest = max((i.file_size for i in members), default=0)
    if declared > limits.max_total_bytes or largest > limits.max_file_bytes or (
            declared > limits.ratio_grace_bytes and declared > limits.max_ratio * size):
        raise ArchiveBombError(
            f"{label}: declares {size_text(declared)} uncompressed from {size_text(size)} "
            f"(limits: ratio {limits.max_ratio:g}, {size_text(limits.max_file_bytes)} a file, "
            f"{size_text(limits.max_total_bytes)} in all) - refused as a possible zip bomb",
            hint="if the data is genuine, split it into smaller archives")


def size_text(n: int) -> str:
    """`n` bytes for a message: `50 GiB`, `3.2 MiB`, `512 bytes`."""
    if n >= GiB:
        return f"{n / GiB:.3g} GiB"
    if n >= MiB:
        return f"{n / MiB:.3g} MiB"
    return f"{n} bytes"
