"""A query's tables, resolved through Glue and read from S3 as the caller.

`GlueTables.resolve` asks Glue (`GetTable`, and `GetPartitions` for a partitioned table) with the
credentials that signed the query, so the caller's IAM policies decide what the query may read,
as in Athena:

- a `VIRTUAL_VIEW` becomes its Trino SQL (the Presto view text Athena stores), expanded by the
  engine in place of the reference;
- an `EXTERNAL_TABLE` of parquet becomes a pyarrow dataset: the table's columns (Glue's Hive
  types as Arrow types) plus its partition keys, one fragment per parquet file of each
  partition's location, each fragment carrying its partition's typed key values as a partition
  expression. pyarrow materialises those values as constant columns and skips the fragments a
  pushed-down filter excludes, so `WHERE commit_seq <= 3` reads only those partitions' files.

Files are listed and read through `S3Reads`, a pyarrow S3 filesystem signed with the caller's
keys (pointed at the local endpoint); its datasets count the bytes of every parquet file a scan
reads (the fragments left after pruning): that is the query's `DataScannedInBytes`.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from botocore.exceptions import ClientError

from edl.local.athena.sql import QueryFailure, TableName, presto_view_sql

_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)
_ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(), "varchar": pa.string(), "char": pa.string(),
    "boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "int": pa.int32(),
    "integer": pa.int32(), "bigint": pa.int64(), "float": pa.float32(), "real": pa.float32(),
    "double": pa.float64(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
    "binary": pa.binary(), "varbinary": pa.binary(),
}


# -- Glue's Hive types ------------------------------------------------------------------------

class _TypeReader:
    """A recursive-descent reader of Hive type strings: `decimal(10,2)`,
    `array<struct<a:int,b:map<string,double>>>`."""

    def __init__(self, text: str) -> None:
        self.text = text.replace(" ", "").lower()
        self.at = 0

    def read(self) -> pa.DataType:
        result = self._type()
        if self.at != len(self.text):
            raise ValueError(f"unexpected {self.text[self.at:]!r}")
        return result

    def _word(self) -> str:
        start = self.at
        while self.at < len(self.text) and (self.text[self.at].isalnum()
                                            or self.text[self.at] == "_"):
            self.at += 1
        return self.text[start:self.at]

    def _expect(self, char: str) -> None:
        if self.text[self.at:self.at + 1] != char:
            raise ValueError(f"expected {char!r} at {self.at}")
        self.at += 1

    def _peek(self, char: str) -> bool:
        return self.text[self.at:self.at + 1] == char

    def _type(self) -> pa.DataType:
        name = self._word()
        if name == "array":
            self._expect("<")
            item = self._type()
            self._expect(">")
            return pa.list_(item)
        if name == "map":
            self._expect("<")
            key = self._type()
            self._expect(",")
            value = self._type()
            self._expect(">")
            return pa.map_(key, value)
        if name == "struct":
            self._expect("<")
            fields = []
            while not self._peek(">"):
                field_name = self._word()
                self._expect(":")
                fields.append(pa.field(field_name, self._type()))
                if self._peek(","):
                    self.at += 1
            self._expect(">")
            return pa.struct(fields)
        arguments = []
        if self._peek("("):
            self.at += 1
            arguments = [int(part) for part in self._until(")").split(",")]
        if name in ("decimal", "numeric"):
            precision = arguments[0] if arguments else 10
            scale = arguments[1] if len(arguments) > 1 else 0
            return pa.decimal128(precision, scale)
        if name in _PRIMITIVES:
            return _PRIMITIVES[name]
        raise ValueError(f"unknown type {name!r}")

    def _until(self, char: str) -> str:
        end = self.text.index(char, self.at)
        inner, self.at = self.text[self.at:end], end + 1
        return inner


def arrow_type(hive_type: str) -> pa.DataType:
    """The Arrow type of a Glue column type (Hive's names)."""
    try:
        return _TypeReader(hive_type).read()
    except (ValueError, IndexError) as error:
        raise QueryFailure("HIVE_INVALID_METADATA", f"column type {hive_type!r} cannot be "
                           f"read ({error})") from None


def _partition_value(text: str | None, t: pa.DataType) -> pa.Scalar:
    if text is None or text == "__HIVE_DEFAULT_PARTITION__":
        return pa.scalar(None, t)
    return pc.cast(pa.scalar(text), t)


# -- reading S3 as the caller, counting -------------------------------------------------------

@dataclass
class _Scanned:
    files: set[str] = field(default_factory=set)
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _CountedDataset(ds.FileSystemDataset):
    """A dataset that records which files each scan of it reads. DuckDB scans a pyarrow
    dataset through its `scanner(columns=, filter=)`; the fragments that filter keeps (after
    partition pruning) are the files the scan opens."""

    scanned: _Scanned
    sizes: dict[str, int]

    def scanner(self, columns: Any = None, filter: Any = None, **kwargs: Any) -> Any:
        kept = [fragment.path for fragment in self.get_fragments(filter=filter)]
        with self.scanned.lock:
            for path in kept:
                if path not in self.scanned.files:
                    self.scanned.files.add(path)
                    self.scanned.bytes += self.sizes.get(path, 0)
        return super().scanner(columns=columns, filter=filter, **kwargs)


@dataclass(frozen=True)
class Credentials:
    """The keys that signed the query: everything the query reads is read with them."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str


class S3Reads:
    """pyarrow's S3 filesystem as the caller, against the local endpoint."""

    def __init__(self, endpoint: str, credentials: Credentials) -> None:
        parsed = urlparse(endpoint)
        self.s3 = pafs.S3FileSystem(
            access_key=credentials.access_key_id, secret_key=credentials.secret_access_key,
            session_token=credentials.session_token, region=credentials.region,
            endpoint_override=parsed.netloc, scheme=parsed.scheme or "http",
            allow_bucket_creation=False, allow_bucket_deletion=False)
        self.scanned = _Scanned()
        self.sizes: dict[str, int] = {}

    def dataset(self, fragments: list, schema: pa.Schema,
                fmt: ds.ParquetFileFormat) -> ds.Dataset:
        """A dataset of these fragments whose scans count the bytes of the files they read."""
        dataset = _CountedDataset(fragments, schema, fmt, self.s3)
        dataset.scanned = self.scanned
        dataset.sizes = self.sizes
        return dataset

    @property
    def bytes_scanned(self) -> int:
        return self.scanned.bytes

    def parquet_files(self, location: str) -> list[tuple[str, int]]:
        """The parquet files under an `s3://` location: (path, size); Spark's and Hive's
        marker files (`_SUCCESS`, `.crc`, hidden names) are not data."""
        path = location.removeprefix("s3://").removeprefix("s3a://").rstrip("/")
        selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
        found = []
        for info in self.s3.get_file_info(selector):
            name = info.path.rsplit("/", 1)[-1]
            if info.type != pafs.FileType.File or name.startswith(("_", ".")) or not info.size:
                continue
            if name.endswith((".crc", ".metadata", ".json")):
                continue
            self.sizes[info.path] = info.size
            found.append((info.path, info.size))
        return sorted(found)


# -- resolution -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedView:
    name: str              # db.view, for messages
    database: str          # where the view's unqualified names resolve
    sql: str               # Trino


@dataclass(frozen=True)
class ResolvedTable:
    name: str              # db.table
    dataset: ds.Dataset


def is_access_denied(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        # moto answers a JSON service's refusal as a bare 403 with an XML body
        return (error.response.get("Error", {}).get("Code") in (*_ACCESS_DENIED, "403")
                or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403)
    text = str(error)
    return "ACCESS_DENIED" in text or "AccessDenied" in text or "Access Denied" in text


def _client_error_message(error: ClientError) -> str:
    message = error.response.get("Error", {}).get("Message", "")
    found = _XML_MESSAGE.search(message)
    return html.unescape(found.group(1)) if found else message


def access_denied(what: str, error: BaseException) -> QueryFailure:
    detail = (_client_error_message(error) if isinstance(error, ClientError)
              else str(error).splitlines()[0])
    return QueryFailure("PERMISSION_DENIED", f"Insufficient permissions to execute the query. "
                        f"Access denied when reading {what}: {detail}")


class GlueTables:
    """Resolves the tables of one query, as its caller. A table named twice (a dataset's view
    reads its table of updates twice) is looked up and listed once."""

    def __init__(self, glue: Any, reads: S3Reads) -> None:
        self.glue = glue
        self.reads = reads
        self._resolved: dict[str, ResolvedView | ResolvedTable] = {}

    def resolve(self, table: TableName, default_database: str | None,
                position: str = "") -> ResolvedView | ResolvedTable:
        if table.catalog not in (None, "awsdatacatalog"):
            raise QueryFailure("CATALOG_NOT_FOUND", f"{position}Catalog '{table.catalog}' "
                               "does not exist")
        database = table.database or default_database
        if not database:
            raise QueryFailure("SCHEMA_NOT_FOUND", f"{position}Schema must be specified when "
                               "session schema is not set (give a database in the query or in "
                               "the QueryExecutionContext)")
        name = f"{database}.{table.name}"
        if name not in self._resolved:
            self._resolved[name] = self._lookup(table, database, name, position)
        return self._resolved[name]

    def _lookup(self, table: TableName, database: str, name: str,
                position: str) -> ResolvedView | ResolvedTable:
        try:
            found = self.glue.get_table(DatabaseName=database, Name=table.name)["Table"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            message = error.response.get("Error", {}).get("Message", "")
            if is_access_denied(error):
                raise access_denied(f"table {name}", error) from None
            if code == "EntityNotFoundException" and "database" in message.lower():
                raise QueryFailure("SCHEMA_NOT_FOUND", f"{position}Schema '{database}' does not "
                                   "exist") from None
            if code == "EntityNotFoundException":
                raise QueryFailure("TABLE_NOT_FOUND", f"{position}Table "
                                   f"'{table.qualified(database)}' does not exist") from None
            raise
        if found.get("TableType") == "VIRTUAL_VIEW":
            return ResolvedView(name, database,
                                presto_view_sql(found.get("ViewOriginalText", ""), name))
        return ResolvedTable(name, self._dataset(found, database, name))

    def _dataset(self, found: dict, database: str, name: str) -> ds.Dataset:
        storage = found.get("StorageDescriptor") or {}
        library = (storage.get("SerdeInfo") or {}).get("SerializationLibrary", "")
        classification = (found.get("Parameters") or {}).get("classification", "parquet")
        if "parquet" not in library.lower() and classification.lower() != "parquet":
            raise QueryFailure("NOT_SUPPORTED", f"table {name} is not parquet: the local Athena "
                               "reads parquet tables only")
        keys = found.get("PartitionKeys") or []
        columns = [pa.field(c["Name"].lower(), arrow_type(c["Type"]))
                   for c in storage.get("Columns") or []]
        key_fields = [pa.field(k["Name"].lower(), arrow_type(k["Type"])) for k in keys]
        schema = pa.schema(columns + key_fields)
        fmt = ds.ParquetFileFormat()
        fragments = []
        try:
            if keys:
                for values, location in self._partitions(database, found["Name"]):
                    expression = None
                    for key, text in zip(key_fields, values, strict=False):
                        term = ds.field(key.name) == _partition_value(text, key.type)
                        expression = term if expression is None else expression & term
                    for path, size in self.reads.parquet_files(location):
                        fragments.append(fmt.make_fragment(
                            path, self.reads.s3, partition_expression=expression,
                            file_size=size))
            else:
                for path, size in self.reads.parquet_files(storage.get("Location", "")):
                    fragments.append(fmt.make_fragment(path, self.reads.s3,
                                                       file_size=size))
        except OSError as error:
            if is_access_denied(error):
                raise access_denied(f"table {name}", error) from None
            raise QueryFailure("HIVE_CANNOT_OPEN_SPLIT", f"table {name}: its files cannot be "
                               f"listed ({str(error).splitlines()[0]})") from None
        return self.reads.dataset(fragments, schema, fmt)

    def _partitions(self, database: str, table: str) -> Iterator[tuple[list[str], str]]:
        try:
            pages = self.glue.get_paginator("get_partitions").paginate(
                DatabaseName=database, TableName=table)
            for page in pages:
                for partition in page.get("Partitions", []):
                    location = (partition.get("StorageDescriptor") or {}).get("Location", "")
                    yield partition.get("Values", []), location
        except ClientError as error:
            if is_access_denied(error):
                raise access_denied(f"the partitions of table {database}.{table}",
                                    error) from None
            raise
