"""Which format a raw file is in, and the options that say how to parse it.

Formats are told by name: `.csv`, `.tsv` (tab-delimited CSV), `.json`/`.jsonl`/`.ndjson` (JSON
lines: one object a line), `.parquet`/`.pq`, `.xlsx`/`.xlsm` (Excel, read with openpyxl; the first
worksheet, its first row is the header). Anything else is refused, naming the file — unless
the ingest names the format (`FormatOptions.format`), which then holds for every file of the
source, whatever its name.

Options are checked when they are made, so a bad one is refused before anything is read (the API
answers 400; the job fails before it creates anything): a codec must be a text encoding (not
`base64` or `zlib`), the delimiter one character that is neither a line break nor the quote.
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
FORMAT_NAMES = tuple(sorted(set(FORMATS.values())))


@dataclass(frozen=True)
class FormatOptions:
    """How to parse the files. `delimiter` None means ',' (tab for .tsv); `format` None means
    by each file's extension."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    format: str | None = None

    def __post_init__(self) -> None:
        try:
            text = codecs.lookup(self.encoding)._is_text_encoding
        except LookupError:
            raise IngestError(f"unknown encoding {self.encoding!r}",
                              hint="use a Python codec name: utf-8, latin-1, cp1252, …") from None
        if not text:
            raise IngestError(f"{self.encoding!r} is not a text encoding",
                              hint="use a text codec: utf-8, latin-1, cp1252, …")
        if len(self.quote) != 1 or self.quote in "\r\n":
            raise IngestError(f"the CSV quote must be one character, not a line break, not "
                              f"{self.quote!r}")
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in "\r\n"
                                           or self.delimiter == self.quote):
            raise IngestError(
                f"the CSV delimiter must be one character other than a line break and the "
                f"quote {self.quote!r}, not {self.delimiter!r}")
        if self.format is not None and self.format not in FORMAT_NAMES:
            raise UnknownFormatError(f"unknown format {self.format!r}",
                                     hint=f"choose one of: {', '.join(FORMAT_NAMES)}")

    def format_of(self, path: str) -> str:
        """The format `path` is read in: the one given, else its extension's."""
        return self.format or detect_format(path)

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
