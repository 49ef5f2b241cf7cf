"""Converting one raw file to one parquet part, streaming.

A reader per format yields Arrow record batches (CSV: pyarrow's streaming CSV reader; JSON lines:
newline-aligned 8 MiB chunks through pyarrow's JSON parser; parquet: row-group batches; Excel:
openpyxl's read-only rows, 10,000 at a time); a `ParquetWriter` writes them out in row groups of
about 32 MiB. Memory holds a block or a row group, never the file: a JSON line longer than
`ArchiveLimits.max_line_bytes` is refused rather than held, and an `.xlsx` (a zip openpyxl
inflates itself) is held to the archive limits before it is opened.

Types are inferred while streaming, so a later block can hold a value the type inferred from the
first block cannot (an integer column with `3.5` at line 2,000,000). Then the column is widened
(integer → double → string for CSV and Excel; for JSON only what `edl.utils.schemas.widen_type`
allows) and the file is converted again with the wider type declared. Each restart strictly
widens one column, so there are few; most files convert in one pass.

When pyarrow rejects a CSV file, a second, plain-Python pass finds the first bad line, so the
error says which line and what is wrong (wrong field count, bytes not valid in the encoding).
"""

from __future__ import annotations

import csv as pycsv
import io
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from edl.core_resources.pipelines.ingest.errors import (
    EmptyFileError,
    EncodingError,
    MalformedFileError,
)
from edl.core_resources.pipelines.ingest.formats import FormatOptions
from edl.core_resources.pipelines.ingest.limits import ArchiveLimits, size_text, zip_bomb_check
from edl.utils.schemas import check_column_names, unify_schemas, widen_type

Opener = Callable[[], BinaryIO]
MiB = 1 << 20
CSV_BLOCK = 4 * MiB
JSON_CHUNK = 8 * MiB
ROW_GROUP_BYTES = 32 * MiB
EXCEL_BATCH = 10_000


@dataclass(frozen=True)
class Converted:
    rows: int
    schema: pa.Schema


class _Widen(Exception):
    """Restart the file with this (wider) schema declared."""

    def __init__(self, schema: pa.Schema) -> None:
        super().__init__(str(schema))
        self.schema = schema


def convert_file(fmt: str, label: str, open_input: Opener, open_output: Opener,
                 options: FormatOptions = FormatOptions(),
                 limits: ArchiveLimits = ArchiveLimits()) -> Converted:
    """Convert the file `open_input` gives to parquet into `open_output`; `label` names the file
    in errors. Both openers may be called again when a column has to be widened. `limits` bound
    what a reader holds: one JSON line, the zip inside an `.xlsx`."""
    readers = {"csv": _csv_batches, "jsonl": _json_batches, "parquet": _parquet_batches,
               "excel": _excel_batches}
    read = partial(readers[fmt], limits=limits)
    hint: pa.Schema | None = None
    for _ in range(64):
        try:
            return _write(read(open_input, label, options, hint), open_output, label,
                          lenient=fmt in ("csv", "excel"))
        except _Widen as widen:
            if hint is not None and widen.schema.equals(hint):
                raise MalformedFileError(f"{label}: column types keep changing") from None
            hint = widen.schema
    raise MalformedFileError(f"{label}: column types keep changing")


def _write(batches: Iterator[pa.RecordBatch], open_output: Opener, label: str,
           lenient: bool) -> Converted:
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    rows = 0
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    with open_output() as out:
        try:
            for batch in batches:
                if schema is None:
                    schema = batch.schema
                    check_column_names(schema.names, label)
                    writer = pq.ParquetWriter(out, schema, compression="snappy")
                elif not batch.schema.equals(schema):
                    raise _Widen(_wider(schema, batch.schema, label, lenient))
                pending.append(batch)
                pending_bytes += batch.nbytes
                rows += batch.num_rows
                if pending_bytes >= ROW_GROUP_BYTES and writer is not None:
                    writer.write_table(pa.Table.from_batches(pending, schema))
                    pending, pending_bytes = [], 0
            if pending and writer is not None:
                writer.write_table(pa.Table.from_batches(pending, schema))
        finally:
            if writer is not None:
                writer.close()
    if schema is None:
        raise EmptyFileError(f"{label} holds no data", hint="remove it from the source")
    return Converted(rows=rows, schema=schema)


def _wider(old: pa.Schema, new: pa.Schema, label: str, lenient: bool) -> pa.Schema:
    if not lenient:
        return unify_schemas([(f"{label} (start)", old), (f"{label} (later)", new)],
                             what=f"parts of {label}")
    fields = {f.name: f.type for f in old}
    for f in new:
        current = fields.get(f.name)
        fields[f.name] = f.type if current is None else (widen_type(current, f.type)
                                                         or pa.string())
    return pa.schema(list(fields.items()))


# -- CSV --------------------------------------------------------------------------------------

_CONVERSION = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+): "
                         r"invalid value '(.*)'", re.S)


def _csv_batches(open_input: Opener, label: str, options: FormatOptions,
                 hint: pa.Schema | None, limits: ArchiveLimits) -> Iterator[pa.RecordBatch]:
    codec = options.codec
    read_options = pacsv.ReadOptions(
        block_size=CSV_BLOCK, encoding="utf8" if codec.startswith("utf-8") else codec,
        autogenerate_column_names=not options.header)
    parse_options = pacsv.ParseOptions(delimiter=options.delimiter_for(label),
                                       quote_char=options.quote, newlines_in_values=True)
    convert_options = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in hint} if hint else None)
    reader = None
    with open_input() as src:
        try:
            reader = pacsv.open_csv(src, read_options=read_options, parse_options=parse_options,
                                    convert_options=convert_options)
            schema = reader.schema
            if any(pa.types.is_binary(f.type) for f in schema):
                _diagnose_csv(open_input, label, options, "invalid text")
            yielded = False
            for batch in reader:
                yielded = True
                yield batch
            if not yielded:
                yield pa.RecordBatch.from_pylist([], schema=schema)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if "Empty CSV file" in message:
                raise EmptyFileError(f"{label} is empty (no header line)",
                                     hint="remove the file, or give it a header") from None
            match = _CONVERSION.search(message)
            schema = reader.schema if reader is not None else hint
            if match and schema is not None:
                raise _Widen(_widen_csv_column(schema, int(match.group(1)),
                                               match.group(3))) from None
            _diagnose_csv(open_input, label, options, message)
        except UnicodeDecodeError as exc:
            _diagnose_csv(open_input, label, options, str(exc))


def _widen_csv_column(schema: pa.Schema, index: int, value: str) -> pa.Schema:
    current = schema.field(index).type
    if pa.types.is_null(current) and _parses(int, value):
        wider = pa.int64()
    elif (pa.types.is_null(current) or pa.types.is_integer(current)) and _parses(float, value):
        wider = pa.float64()
    else:
        wider = pa.string()
    return schema.set(index, pa.field(schema.field(index).name, wider))


def _parses(kind: type, value: str) -> bool:
    try:
        kind(value)
        return True
    except ValueError:
        return False


def _diagnose_csv(open_input: Opener, label: str, options: FormatOptions, arrow_message: str):
    """Find the first bad line with Python's csv module and raise an error naming it."""
    codec = options.codec
    with open_input() as src:
        reader = pycsv.reader(_decoded_lines(src, label, codec),
                              delimiter=options.delimiter_for(label), quotechar=options.quote)
        expected = None
        for record in reader:
            if not record:
                continue
            if expected is None:
                expected = len(record)
                continue
            if len(record) != expected:
                raise MalformedFileError(
                    f"{label} line {reader.line_num}: expected {expected} fields, found "
                    f"{len(record)}",
                    hint="quote fields that hold the delimiter or line breaks, or fix the line")
    raise MalformedFileError(f"{label}: cannot be parsed as CSV ({arrow_message})",
                             hint="check the delimiter, quote and encoding options")


def _decoded_lines(src: BinaryIO, label: str, codec: str) -> Iterator[str]:
    number, carry = 0, b""
    while True:
        data = src.read(MiB)
        if data:
            *lines, carry = (carry + data).split(b"\n")
        else:
            lines, carry = ([carry] if carry else []), b""
        for raw in lines:
            number += 1
            if number == 1 and codec == "utf-8" and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode(codec) + "\n"
            except UnicodeDecodeError as exc:
                bad = raw[exc.start:exc.end]
                raise EncodingError(
                    f"{label} line {number}: bytes {bad!r} are not valid {codec}",
                    hint="declare the file's encoding (e.g. --encoding latin-1) or fix the "
                    "bytes") from None
        if not data:
            return


# -- JSON lines -------------------------------------------------------------------------------

_ROW = re.compile(r"row (\d+)")


def _json_batches(open_input: Opener, label: str, options: FormatOptions,
                  hint: pa.Schema | None, limits: ArchiveLimits) -> Iterator[pa.RecordBatch]:
    codec = options.codec
    parse_options = pajson.ParseOptions(explicit_schema=hint, unexpected_field_behavior="infer")
    line, carry, seen = 0, b"", False
    with open_input() as src:
        while True:
            data = src.read(JSON_CHUNK)
            buf = carry + data
            if data:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    if len(buf) > limits.max_line_bytes:
                        raise MalformedFileError(
                            f"{label} line {line + 1}: longer than "
                            f"{size_text(limits.max_line_bytes)} without a line break",
                            hint="JSON lines hold one object a line; a single JSON document "
                            "this large is not ingested") from None
                    carry = buf
                    continue
                chunk, carry = buf[:cut + 1], buf[cut + 1:]
            else:
                chunk, carry = buf, b""
            if chunk.strip():
                chunk = _utf8(chunk, codec, label, line)
                try:
                    table = pajson.read_json(
                        io.BytesIO(chunk), parse_options=parse_options,
                        read_options=pajson.ReadOptions(block_size=len(chunk) + 1))
                except pa.ArrowInvalid as exc:
                    match = _ROW.search(str(exc))
                    where = f" line {line + int(match.group(1)) + 1}" if match else ""
                    raise MalformedFileError(f"{label}{where}: not valid JSON lines ({exc})",
                                             hint="one JSON object per line") from None
                seen = True
                yield from table.to_batches(max_chunksize=65536)
            line += chunk.count(b"\n")
            if not data:
                break
    if not seen:
        raise EmptyFileError(f"{label} holds no JSON lines", hint="remove it from the source")


def _utf8(chunk: bytes, codec: str, label: str, line: int) -> bytes:
    if codec == "utf-8" and chunk.startswith(b"\xef\xbb\xbf") and line == 0:
        chunk = chunk[3:]
    try:
        text = chunk.decode(codec)
    except UnicodeDecodeError as exc:
        where = line + chunk[:exc.start].count(b"\n") + 1
        raise EncodingError(
            f"{label} line {where}: bytes {chunk[exc.start:exc.end]!r} are not valid {codec}",
            hint="declare the file's encoding (e.g. --encoding latin-1) or fix the bytes") \
            from None
    return chunk if codec == "utf-8" else text.encode("utf-8")


# -- parquet ----------------------------------------------------------------------------------

def _parquet_batches(open_input: Opener, label: str, options: FormatOptions,
                     hint: pa.Schema | None, limits: ArchiveLimits) -> Iterator[pa.RecordBatch]:
    with open_input() as src:
        try:
            parquet = pq.ParquetFile(src)
        except (pa.ArrowInvalid, OSError) as exc:
            raise MalformedFileError(f"{label}: not a readable parquet file ({exc})",
                                     hint="check the file is complete") from None
        schema = parquet.schema_arrow
        if parquet.metadata.num_rows == 0:
            yield pa.RecordBatch.from_pylist([], schema=schema)
            return
        yield from parquet.iter_batches(batch_size=65536)


# -- Excel ------------------------------------------------------------------------------------

def _excel_batches(open_input: Opener, label: str, options: FormatOptions,
                   hint: pa.Schema | None, limits: ArchiveLimits) -> Iterator[pa.RecordBatch]:
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    with open_input() as src, tempfile.TemporaryFile() as spool:
        if not getattr(src, "seekable", lambda: False)():
            while chunk := src.read(MiB):
                spool.write(chunk)
            spool.seek(0)
            src = spool
        try:
            # An .xlsx is a zip that openpyxl inflates itself: its entries are held to the
            # archive limits first (Python's zip reader never yields more than an entry declares).
            size = src.seek(0, 2)
            src.seek(0)
            with zipfile.ZipFile(src) as workbook_zip:
                zip_bomb_check(workbook_zip, size, limits, label)
            src.seek(0)
            book = openpyxl.load_workbook(src, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
            raise MalformedFileError(f"{label}: not a readable Excel workbook ({exc})",
                                     hint="save it again as .xlsx") from None
        try:
            rows = book.worksheets[0].iter_rows(values_only=True)
            header = next(rows, None)
            while header is not None and all(v is None for v in header):
                header = next(rows, None)
            if header is None:
                raise EmptyFileError(f"{label}: the first worksheet is empty")
            names = [("" if v is None else str(v).strip()) for v in header]
            while names and names[-1] == "":
                names.pop()
            hinted = {f.name: f.type for f in hint} if hint else {}
            buffer: list[tuple] = []
            yielded = False
            for row in rows:
                if all(v is None for v in row):
                    continue
                buffer.append(row)
                if len(buffer) >= EXCEL_BATCH:
                    yield _excel_batch(buffer, names, hinted)
                    yielded, buffer = True, []
            if buffer or not yielded:
                yield _excel_batch(buffer, names, hinted)
        finally:
            book.close()


def _excel_batch(rows: list[tuple], names: list[str], hinted: dict) -> pa.RecordBatch:
    arrays = []
    for i, name in enumerate(names):
        values = [row[i] if i < len(row) else None for row in rows]
        wanted = hinted.get(name)
        if wanted is not None and pa.types.is_string(wanted):
            values = [None if v is None else str(v) for v in values]
        try:
            arrays.append(pa.array(values, type=wanted))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if wanted is not None and not pa.types.is_string(wanted):
                raise _Widen(pa.schema([*(pa.field(n, t) for n, t in hinted.items()
                                          if n != name), pa.field(name, pa.string())])) from None
            arrays.append(pa.array([None if v is None else str(v) for v in values],
                                   type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)
