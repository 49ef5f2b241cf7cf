"""Registering updates in the Glue Data Catalog, so Athena can query the lake.

One database per instance and tier (`edl.naming.glue_database`), one table per dataset, one
partition per update (partition key `update`, location `s3://<data-bucket>/<dataset>/data/<update>/`).
Each partition carries its own columns, so an update whose schema grew stays readable; the table's
columns follow the newest registered update. Registration goes through the Glue API, not
templates (DESIGN §8), and is idempotent: registering an update twice changes nothing.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from edl import naming
from edl.utils.metadata import DatasetRecord
from edl.utils.schemas import glue_type, schema_from_text
from edl.utils.updates import UpdateRecord

log = logging.getLogger(__name__)

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}


class GlueCatalog:
    def __init__(self, glue_client, instance: str) -> None:
        self._glue = glue_client
        self.instance = instance

    def register_update(self, dataset: DatasetRecord, update: UpdateRecord) -> None:
        database = naming.glue_database(self.instance, dataset.tier)
        columns = [{"Name": f.name, "Type": glue_type(f.type)}
                   for f in schema_from_text(update.arrow_schema)]
        self._ensure_database(database, dataset.tier)
        self._ensure_table(database, dataset, update, columns)
        storage = {**_PARQUET, "Columns": columns,
                   "Location": f"s3://{update.bucket}/{update.data_prefix}"}
        try:
            self._glue.create_partition(
                DatabaseName=database, TableName=dataset.dataset,
                PartitionInput={"Values": [update.update_id], "StorageDescriptor": storage,
                                "Parameters": {"edl_kind": update.kind,
                                               "edl_rows": str(update.rows)}})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "AlreadyExistsException":
                raise
        log.info("%s/%s - registered in Glue table %s.%s", dataset.dataset, update.update_id,
                 database, dataset.dataset)

    def _ensure_database(self, database: str, tier: str) -> None:
        try:
            self._glue.create_database(DatabaseInput={
                "Name": database,
                "Description": f"EDL {self.instance} {tier}-tier datasets"})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "AlreadyExistsException":
                raise

    def _ensure_table(self, database: str, dataset: DatasetRecord, update: UpdateRecord,
                      columns: list[dict]) -> None:
        table_input = {
            "Name": dataset.dataset,
            "Description": dataset.description or f"EDL dataset {dataset.dataset}",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "edl_latest_update": update.update_id},
            "PartitionKeys": [{"Name": "update", "Type": "string"}],
            "StorageDescriptor": {**_PARQUET, "Columns": columns,
                                  "Location": f"s3://{update.bucket}/{dataset.dataset}/data/"},
        }
        try:
            existing = self._glue.get_table(DatabaseName=database, Name=dataset.dataset)["Table"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "EntityNotFoundException":
                raise
            try:
                self._glue.create_table(DatabaseName=database, TableInput=table_input)
                return
            except ClientError as race:
                # A concurrent ingest of the same dataset created it first: update it instead.
                if race.response["Error"]["Code"] != "AlreadyExistsException":
                    raise
            existing = self._glue.get_table(DatabaseName=database, Name=dataset.dataset)["Table"]
        latest = existing.get("Parameters", {}).get("edl_latest_update", "")
        if update.update_id > latest:
            self._glue.update_table(DatabaseName=database, TableInput=table_input)
