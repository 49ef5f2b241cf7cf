"""Which path to the parts a Spark gets, and what the cloud's path counts as a part: decided
without a Spark (fakes stand in for the session and its JVM)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from edl.utils.lake_paths import DataSourcePath, parts_path
from edl.utils.lake_spark_fs import SparkFilesystemPath, committed_parts, spark_reads_parquet_of
from edl.utils.lake_tasks import TaskPath
from edl.utils.storage import S3Access

ROLE = S3Access(region="eu-west-1")                     # tasks reach S3 as their own role
LOCAL = S3Access(region="us-east-1", endpoint_url="http://127.0.0.1:5000",
                 access_key="AKIA", secret_key="s")
VENDED = S3Access(region="eu-west-1", access_key="ASIA", secret_key="s", session_token="t")


class FakeFileSystems:
    """The JVM's `org.apache.hadoop.fs.FileSystem`, knowing the schemes it is given."""

    def __init__(self, schemes: set[str]) -> None:
        self.schemes = schemes

    def getFileSystemClass(self, scheme: str, conf):
        if scheme not in self.schemes:
            raise RuntimeError(f'No FileSystem for scheme "{scheme}"')
        return f"fs for {scheme}"


class FakeJvm:
    def __init__(self, schemes: set[str]) -> None:
        fs = type("fs", (), {"FileSystem": FakeFileSystems(schemes)})
        self.org = type("org", (), {"apache": type("apache", (), {
            "hadoop": type("hadoop", (), {"fs": fs})})})


class FakeSpark:
    def __init__(self, *, data_sources: bool, schemes: set[str] = frozenset()) -> None:
        if data_sources:
            self.dataSource = object()
        self._jvm = FakeJvm(set(schemes))
        self._jsc = type("jsc", (), {"hadoopConfiguration": lambda self: {}})()


@pytest.mark.parametrize(("spark", "access", "path", "fallback"), [
    # Glue 5 (Spark 3.5, EMRFS): Spark's own filesystem, RDD tasks for what it cannot read
    (FakeSpark(data_sources=False, schemes={"s3"}), ROLE, SparkFilesystemPath, TaskPath),
    # a Spark 4 with an S3 filesystem (EMR 8): the same, the data source as its fallback
    (FakeSpark(data_sources=True, schemes={"s3"}), ROLE, SparkFilesystemPath, DataSourcePath),
    # the local runtime: the local cloud's endpoint and keys, which Spark's filesystem ignores
    (FakeSpark(data_sources=True, schemes={"s3"}), LOCAL, DataSourcePath, None),
    (FakeSpark(data_sources=True), LOCAL, DataSourcePath, None),
    # a user reading with the broker's credentials in the cloud: never the cluster's role
    (FakeSpark(data_sources=False, schemes={"s3"}), VENDED, TaskPath, None),
    # pyspark 3.5 from pip: no S3 filesystem, no data sources
    (FakeSpark(data_sources=False), LOCAL, TaskPath, None),
    (FakeSpark(data_sources=False), ROLE, TaskPath, None),
])
def test_the_path_follows_what_spark_can_do_and_how_tasks_reach_s3(spark, access, path, fallback):
    chosen = parts_path(spark, access)
    assert type(chosen) is path
    if fallback is not None:
        assert type(chosen.fallback) is fallback


def test_a_spark_connect_session_has_no_jvm_to_ask_and_gets_the_data_source():
    connect = type("Connect", (), {"dataSource": object()})()
    assert type(parts_path(connect, ROLE)) is DataSourcePath


def test_the_parts_of_a_written_folder_are_its_committed_parquet_files_in_partition_order():
    entries = [
        ("_SUCCESS", 0, True), ("._SUCCESS.crc", 8, True), ("_temporary", 0, False),
        ("part-00010-u-c000.snappy.parquet", 10, True),
        ("part-00002-u-c001.snappy.parquet", 21, True),
        ("part-00002-u-c000.snappy.parquet", 20, True),
        (".part-00002-u-c000.snappy.parquet.crc", 1, True),
        ("part-00003-u-c000.snappy.parquet.inprogress", 5, True),
    ]
    assert committed_parts(entries) == [("part-00002-u-c000.snappy.parquet", 20),
                                        ("part-00002-u-c001.snappy.parquet", 21),
                                        ("part-00010-u-c000.snappy.parquet", 10)]


@pytest.mark.parametrize(("field", "readable"), [
    (pa.timestamp("us", tz="UTC"), True),
    (pa.timestamp("ms"), True),
    (pa.timestamp("ns", tz="UTC"), False),
    (pa.struct([("at", pa.timestamp("ns"))]), False),
    (pa.list_(pa.timestamp("ns")), False),
    (pa.map_(pa.string(), pa.timestamp("ns")), False),
    (pa.decimal128(38, 2), True),
    (pa.decimal256(40, 2), False),
    (pa.null(), True),
])
def test_updates_spark_cannot_read_as_the_lake_promises_go_to_the_fallback(field, readable):
    assert spark_reads_parquet_of(pa.schema([("v", field)])) is readable
