"""Which format a raw file is in, and the options that say how to parse it.

Formats are told by name: `.csv`, `.tsv` (tab-delimited CSV), `.json`/`.jsonl`/`.ndjson` (JSON
lines: one object a line), `.parquet`/`.pq`, `.xlsx`/`.xlsm` (Excel, read with openpyxl; the first
worksheet, its first row is the header). Anything else is refused, naming the file.
"""

from __future__ import annotations

import codecs
import posixpath
from dataclasses import asdict, dataclass

from edl.core_resources.pipelines.ingest.errors import IngestError, UnknownFormatError

FORMATS = {
    ".csv": "csv", ".tsv": "csv", ".json": "jsonl", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel", ".xlsm": "excel",
}


@dataclass(frozen=True)
class FormatOptions:
    """How to parse text files. `delimiter` None means ',' (tab for .tsv)."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True

    def __post_init__(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise IngestError(f"unknown encoding {self.encoding!r}",
                              hint="use a Python codec name: utf-8, latin-1, cp1252, …") from None
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise IngestError(f"the CSV delimiter must be one character, not {self.delimiter!r}")
        if len(self.quote) != 1:
            raise IngestError(f"the CSV quote must be one character, not {self.quote!r}")

    def delimiter_for(self, path: str) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if path.lower().endswith(".tsv") else ","

    @property
    def codec(self) -> str:
        """The Python codec name (`utf-8`, `iso8859-1`, …)."""
        return codecs.lookup(self.encoding).name

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def detect_format(path: str) -> str:
    ext = posixpath.splitext(path.lower())[1]
    try:
        return FORMATS[ext]
    except KeyError:
        raise UnknownFormatError(
            f"{path}: unknown format {ext or '(no extension)'!r}",
            hint=f"name files by their format: {', '.join(sorted(FORMATS))}") from None
