"""Parts read and written by Spark's own filesystem: `s3://` on Glue and EMR (EMRFS).

Glue 5 runs Spark 3.5, which has no Python data sources, and its Spark reads `s3://` itself as
the job's role; so in the cloud the parts go through Spark's parquet reader and writer
(`edl.utils.lake_paths` picks this path). The lake's promises hold as they do elsewhere:

- Reading: each update is read on its own with `spark.read.parquet` of its parts' URLs (part
  keys come from the update's record, nothing is listed) and its columns cast to the schema of
  all the updates read (a column an update lacks is null), then the updates are put together.
  With `with_meta`, `_edl_order` is the update's position and `_edl_row` comes from Spark's own
  file metadata (the part number in the file's name × 2**40 + `_metadata.row_index`).
  Updates holding types Spark's parquet reader refuses (nanosecond timestamps, decimals wider
  than 38 digits) are read by the fallback path instead (pyarrow in tasks).
- Checksums: Spark's reader reads the bytes itself, so each part is checked before the read
  against the SHA-256 S3 keeps with the object (the commit's copy asked S3 for it): a part
  whose stored SHA-256 differs from the recorded one fails the read with
  `ChecksumMismatchError`. A part S3 keeps no SHA-256 for (one copied in several parts, or put
  again by someone) has its bytes hashed in Spark tasks instead. What is checked is the object
  as it is at the check; one replaced between the check and Spark's read would go unseen (a
  complete update's parts are never written again by EDL, and only EDL writes data buckets).
- Writing: the output goes into the update's staging folder with Spark's parquet writer
  (timestamps as microseconds, not INT96, so that every reader sees the types the update
  records). Spark's committer leaves only the committed files there, and a `_SUCCESS` marker;
  the parts are the committed `.parquet` files (never `_SUCCESS`, `_temporary/`, `.crc` or
  other hidden files) that hold rows, in partition order, their row counts from Spark's
  file metadata. The
  commit then copies them to their final keys with S3 computing their SHA-256, as for any
  other update (`edl.core_resources.pipelines.wrapper.output`).

`url` turns a bucket and key into what Spark opens (`s3://bucket/key`); a test can point it at
another filesystem Spark has.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from edl.utils.lake_paths import PartsPath, UpdateParts, WrittenPart
from edl.utils.part_io import ORDER_COLUMN, PART_SHIFT, ROW_COLUMN, PartToRead, checksum_mismatch
from edl.utils.schemas import spark_schema
from edl.utils.storage import S3Access, object_sha256

_HEAD_THREADS = 16
_PART_NUMBER = re.compile(r"^part-(\d+)")
_OUTPUT_TIMESTAMPS = "spark.sql.parquet.outputTimestampType"


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class SparkFilesystemPath:
    name = "spark filesystem"

    def __init__(self, spark, access: S3Access, fallback: PartsPath,
                 url: Callable[[str, str], str] = s3_url) -> None:
        self.spark = spark
        self.access = access
        self.fallback = fallback
        self.url = url

    # -- reading --------------------------------------------------------------------------------

    def read(self, dataset: str, updates: list[UpdateParts], schema: pa.Schema,
             with_meta: bool):
        own = [u for u in updates if spark_reads_parquet_of(u.schema)]
        others = [u for u in updates if not spark_reads_parquet_of(u.schema)]
        self.verify(dataset, [p for u in own for p in u.parts])
        target = spark_schema(schema)
        frames = [self._read_update(u, target, with_meta) for u in own if u.parts]
        if others or not frames:
            frames.append(self.fallback.read(dataset, others, schema, with_meta))
        result = frames[0]
        for frame in frames[1:]:
            result = result.unionByName(frame)
        return result

    def _read_update(self, update: UpdateParts, target, with_meta: bool):
        from pyspark.sql import functions as F

        frame = self.spark.read.parquet(*[self.url(p.bucket, p.key) for p in update.parts])
        present = set(frame.columns)
        columns = [(F.col(_quoted(f.name)) if f.name in present else F.lit(None))
                   .cast(f.dataType).alias(f.name) for f in target.fields]
        if with_meta:
            order = update.parts[0].order
            part = F.regexp_extract(F.col("_metadata.file_name"), _PART_NUMBER.pattern, 1)
            columns += [F.lit(order).cast("long").alias(ORDER_COLUMN),
                        (part.cast("long") * F.lit(1 << PART_SHIFT)
                         + F.col("_metadata.row_index")).alias(ROW_COLUMN)]
        return frame.select(*columns)

    def verify(self, dataset: str, parts: list[PartToRead]) -> None:
        """Fail unless every part with a recorded SHA-256 is, by S3's stored checksum or, where
        S3 keeps none, by its bytes hashed in Spark tasks."""
        recorded = [p for p in parts if p.sha256]
        client = self.access.client()

        def stored(part: PartToRead) -> str | None:
            head = client.head_object(Bucket=part.bucket, Key=part.key, ChecksumMode="ENABLED")
            value = head.get("ChecksumSHA256")
            if not value or "-" in value:   # none, or a multipart upload's checksum of checksums
                return None
            return base64.b64decode(value).hex()

        with ThreadPoolExecutor(max_workers=_HEAD_THREADS) as pool:
            sums = list(pool.map(stored, recorded))
        unknown = []
        for part, digest in zip(recorded, sums, strict=True):
            if digest is None:
                unknown.append(part)
            elif digest != part.sha256:
                raise checksum_mismatch(dataset, part)
        if not unknown:
            return
        access = self.access
        hashed = self.spark.sparkContext.parallelize(
            [(p.bucket, p.key) for p in unknown], len(unknown)).map(
            lambda bk: object_sha256(access.client(), bk[0], bk[1])).collect()
        for part, digest in zip(unknown, hashed, strict=True):
            if digest != part.sha256:
                raise checksum_mismatch(dataset, part)

    # -- writing --------------------------------------------------------------------------------

    def write(self, frame, bucket: str, prefix: str, schema: pa.Schema) -> list[WrittenPart]:
        from pyspark.sql import functions as F

        folder = self.url(bucket, prefix)
        conf = self.spark.conf
        previous = conf.get(_OUTPUT_TIMESTAMPS, None)
        conf.set(_OUTPUT_TIMESTAMPS, "TIMESTAMP_MICROS")
        try:
            frame.write.parquet(folder)
        finally:
            if previous is None:
                conf.unset(_OUTPUT_TIMESTAMPS)
            else:
                conf.set(_OUTPUT_TIMESTAMPS, previous)
        files = committed_parts(self._list(folder))
        if not files:
            return []
        counted = (self.spark.read.parquet(*[folder.rstrip("/") + "/" + n for n, _ in files])
                   .groupBy(F.col("_metadata.file_name").alias("name")).count().collect())
        rows = {r["name"]: int(r["count"]) for r in counted}
        return [WrittenPart(f"{prefix}{name}", rows[name], size) for name, size in files
                if rows.get(name)]

    def _list(self, folder: str) -> list[tuple[str, int, bool]]:
        """The entries of `folder` as Spark's filesystem sees them: (name, bytes, is a file)."""
        jvm = self.spark._jvm
        path = jvm.org.apache.hadoop.fs.Path(folder)
        fs = path.getFileSystem(self.spark._jsc.hadoopConfiguration())
        return [(s.getPath().getName(), int(s.getLen()), bool(s.isFile()))
                for s in fs.listStatus(path)]


def committed_parts(entries: Iterable[tuple[str, int, bool]]) -> list[tuple[str, int]]:
    """The data files among a written folder's entries (name, bytes, is a file), in partition
    order: `.parquet` files, not `_SUCCESS`, `_temporary/` or any other `_`/`.` file."""
    files = [(name, size) for name, size, is_file in entries
             if is_file and name.endswith(".parquet") and not name.startswith(("_", "."))]

    def order(item: tuple[str, int]) -> tuple[int, str]:
        number = _PART_NUMBER.match(item[0])
        return (int(number.group(1)) if number else -1, item[0])

    return sorted(files, key=order)


def spark_reads_parquet_of(schema: pa.Schema) -> bool:
    """Whether Spark's parquet reader reads parts of this schema as the lake promises: not
    nanosecond timestamps (Spark refuses them) nor decimals wider than Spark's 38 digits."""
    return all(_spark_reads(f.type) for f in schema)


def _spark_reads(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return t.unit != "ns"
    if pa.types.is_decimal(t):
        return t.precision <= 38
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _spark_reads(t.value_type)
    if pa.types.is_map(t):
        return _spark_reads(t.key_type) and _spark_reads(t.item_type)
    if pa.types.is_struct(t):
        return all(_spark_reads(t.field(i).type) for i in range(t.num_fields))
    return True


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
