"""A query's result as Athena hands it out: typed column info, value strings, pages and CSV.

Athena (engine 3, Trino) gives every value as a string (`VarCharValue`) and NULL as a `Datum`
without one; its result object is a CSV whose header and values are all quoted, NULL an empty
unquoted field. The strings are Trino's: `true`, `2024-01-31`, `2024-01-31 10:00:00.000`
(timestamps to the millisecond), `12.50` (a decimal with its scale), doubles as Java writes them
(`2.5`, `1.0E7`), arrays `[1, 2]`, maps `{a=1}`, rows `{x=1, y=a}`. Column types are Athena's
names (`varchar`, `bigint`, `decimal` with precision and scale, `array`, `map`, `row`, …).

`ResultSet` holds one result (an Arrow table) and formats only the rows a page asks for.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

MAX_PAGE_ROWS = 1000
_VARCHAR_PRECISION = 2147483647


def athena_type(t: pa.DataType) -> tuple[str, int, int]:
    """(Athena's type name, precision, scale) of an Arrow type, as `ColumnInfo` gives them."""
    if pa.types.is_boolean(t):
        return "boolean", 0, 0
    if pa.types.is_int8(t):
        return "tinyint", 3, 0
    if pa.types.is_int16(t):
        return "smallint", 5, 0
    if pa.types.is_int32(t):
        return "integer", 10, 0
    if pa.types.is_integer(t):
        return "bigint", 19, 0
    if pa.types.is_float32(t):
        return "real", 7, 0
    if pa.types.is_floating(t):
        return "double", 17, 0
    if pa.types.is_decimal(t):
        return "decimal", t.precision, t.scale
    if pa.types.is_date(t):
        return "date", 0, 0
    if pa.types.is_timestamp(t):
        return ("timestamp with time zone" if t.tz else "timestamp"), 3, 0
    if pa.types.is_time(t):
        return "time", 3, 0
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "varbinary", 1073741824, 0
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "array", 0, 0
    if pa.types.is_map(t):
        return "map", 0, 0
    if pa.types.is_struct(t):
        return "row", 0, 0
    if pa.types.is_null(t):
        return "unknown", 0, 0
    return "varchar", _VARCHAR_PRECISION, 0


def column_info(schema: pa.Schema) -> list[dict[str, Any]]:
    """`ResultSetMetadata.ColumnInfo`, as Athena fills it for a query's columns."""
    info = []
    for field in schema:
        name, precision, scale = athena_type(field.type)
        info.append({"CatalogName": "hive", "SchemaName": "", "TableName": "",
                     "Name": field.name, "Label": field.name, "Type": name,
                     "Precision": precision, "Scale": scale, "Nullable": "UNKNOWN",
                     "CaseSensitive": name == "varchar"})
    return info


def _shortest_digits(value: float, single: bool) -> str:
    """The fewest significant digits that read back as the same double (or float32)."""
    if not single:
        return repr(value)
    target = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == target:
            return text
    return repr(value)


def java_double(value: float, single: bool = False) -> str:
    """Java's `Double.toString` (`Float.toString` for `single`), Trino's double to varchar:
    plain from 1e-3 to below 1e7 (`2.5`, `100.0`), else `1.0E7`, `1.25E-4`; `NaN`,
    `Infinity`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    digits = Decimal(_shortest_digits(value, single))
    if 1e-3 <= abs(value) < 1e7:
        text = format(digits, "f")
        return text if "." in text else text + ".0"
    sign, numerals, exponent = digits.as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, numerals)).rstrip("0") or "0"
    power = exponent + len(numerals) - 1
    text = mantissa[0] + "." + (mantissa[1:] or "0")
    return f"{'-' if sign else ''}{text}E{power}"


def _timestamp(value: dt.datetime) -> str:
    text = value.strftime("%Y-%m-%d %H:%M:%S") + f".{value.microsecond // 1000:03d}"
    if value.tzinfo is not None:
        text += " " + (value.tzname() or "UTC")
    return text


def format_value(value: Any, t: pa.DataType) -> str | None:
    """Trino's string for one value of type `t` (None for NULL)."""
    if value is None:
        return None
    if pa.types.is_boolean(t):
        return "true" if value else "false"
    if pa.types.is_floating(t):
        return java_double(float(value), single=pa.types.is_float32(t))
    if pa.types.is_decimal(t):
        return f"{Decimal(value):.{t.scale}f}"
    if pa.types.is_timestamp(t):
        return _timestamp(value)
    if pa.types.is_date(t):
        return value.isoformat()
    if pa.types.is_time(t):
        return value.strftime("%H:%M:%S") + f".{value.microsecond // 1000:03d}"
    if isinstance(value, bytes):
        return " ".join(f"{byte:02x}" for byte in value)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "[" + ", ".join(_nested(v, t.value_type) for v in value) + "]"
    if pa.types.is_map(t):
        return "{" + ", ".join(f"{_nested(k, t.key_type)}={_nested(v, t.item_type)}"
                               for k, v in value) + "}"
    if pa.types.is_struct(t):
        return "{" + ", ".join(f"{t.field(i).name}={_nested(value.get(t.field(i).name), t.field(i).type)}"
                               for i in range(t.num_fields)) + "}"
    return str(value)


def _nested(value: Any, t: pa.DataType) -> str:
    text = format_value(value, t)
    return "null" if text is None else text


def _row_strings(table: pa.Table) -> Iterator[list[str | None]]:
    columns = [(column.to_pylist(), field.type) for column, field in
               zip(table.columns, table.schema, strict=True)]
    for row in range(table.num_rows):
        yield [format_value(values[row], t) for values, t in columns]


def _datum(text: str | None) -> dict[str, str]:
    return {} if text is None else {"VarCharValue": text}


@dataclass
class ResultSet:
    """One query's result, paged as `GetQueryResults` pages it: the header row first (counted
    as a row of the first page, as Athena does), then the data rows."""

    table: pa.Table

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def metadata(self) -> dict[str, Any]:
        return {"ColumnInfo": column_info(self.table.schema)}

    def page(self, start: int, max_results: int) -> tuple[list[dict], int | None]:
        """Rows `start`… of the header-and-data sequence (at most `max_results`), and where
        the next page starts, or None at the end."""
        header = 1
        total = self.rows + header
        end = min(total, start + max_results)
        rows: list[dict] = []
        if start == 0 and end > 0:
            rows.append({"Data": [_datum(name) for name in self.table.column_names]})
        first_data = max(0, start - header)
        last_data = max(0, end - header)
        if last_data > first_data:
            for values in _row_strings(self.table.slice(first_data, last_data - first_data)):
                rows.append({"Data": [_datum(v) for v in values]})
        return rows, (end if end < total else None)

    def csv_bytes(self) -> bytes:
        """Athena's result CSV: header and values quoted, quotes doubled, NULL empty."""
        out = io.StringIO()
        out.write(",".join(_quoted(name) for name in self.table.column_names) + "\n")
        for offset in range(0, self.rows, 10000):
            for values in _row_strings(self.table.slice(offset, 10000)):
                out.write(",".join("" if v is None else _quoted(v) for v in values) + "\n")
        return out.getvalue().encode("utf-8")

    def metadata_bytes(self) -> bytes:
        """The `.csv.metadata` object. Athena writes a binary (protobuf) encoding of the
        result's column info that no public client reads; the local Athena writes the same
        information as JSON."""
        return json.dumps(self.metadata(), indent=1).encode()


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def encode_token(query_id: str, start: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([query_id, start]).encode()).decode()


def decode_token(token: str, query_id: str) -> int:
    """The row a `NextToken` resumes at; ValueError if it is not a token of this query's."""
    try:
        owner, start = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise ValueError("the NextToken is not one this API gave out") from None
    if owner != query_id or not isinstance(start, int) or start < 0:
        raise ValueError("the NextToken belongs to another query's results")
    return start
