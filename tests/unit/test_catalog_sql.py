"""The SQL and the Presto view text the catalog writes (no AWS)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from edl.utils.catalog import (
    CatalogError,
    dataset_sql,
    decode_presto_view,
    define_dataset,
    presto_view,
)
from edl.utils.metadata import DatasetRecord, DeltaConvention
from edl.utils.schemas import schema_to_text, trino_type
from edl.utils.updates import UpdateRecord, format_update_id

CONVENTION = DeltaConvention(("id",), "op", "D")
RECORD = DatasetRecord(dataset="trials", tier="internal", owner="alice", home_region="eu-west-1",
                       delta=CONVENTION)


def committed(n: int, kind: str, seq: int, schema: pa.Schema) -> UpdateRecord:
    return UpdateRecord(dataset="trials", update_id=format_update_id(n), kind=kind,
                        status="complete", source="s3://x/y", bucket="b", commit_seq=seq,
                        arrow_schema=schema_to_text(schema))


def test_the_view_text_decodes_back_to_what_was_encoded():
    text = presto_view('SELECT "é" FROM "t"', "edl_dev01_internal", [("é", "varchar")], "alice")
    assert text["ViewExpandedText"] == "/* Presto View */"
    assert text["ViewOriginalText"].startswith("/* Presto View: ")
    assert decode_presto_view(text["ViewOriginalText"]) == {
        "originalSql": 'SELECT "é" FROM "t"', "catalog": "awsdatacatalog",
        "schema": "edl_dev01_internal", "columns": [{"name": "é", "type": "varchar"}],
        "owner": "alice", "runAsInvoker": True}
    with pytest.raises(ValueError, match="not a Presto view"):
        decode_presto_view("SELECT 1")


def test_time_travel_bounds_the_commit_position_and_nothing_else():
    now = dataset_sql("db_updates", "trials", ["id", "val", "op"], CONVENTION, False)
    then = dataset_sql("db_updates", "trials", ["id", "val", "op"], CONVENTION, False, 3)
    # both reads of the table are bounded: the newest snapshot's and the rows'
    assert then == now.replace("WHERE \"kind\" = 'snapshot'\n",
                               "WHERE \"kind\" = 'snapshot' AND \"commit_seq\" <= 3\n").replace(
        '  WHERE ("base"', '  WHERE "u"."commit_seq" <= 3 AND ("base"')
    assert then.count("<= 3") == 2


def test_the_op_column_is_selected_only_when_the_snapshot_has_it():
    dropped = dataset_sql("u", "trials", ["id", "op"], CONVENTION, False)
    kept = dataset_sql("u", "trials", ["id", "op"], CONVENTION, True)
    assert dropped.splitlines()[-3] == 'SELECT "id" FROM "ranked"'
    assert kept.splitlines()[-3] == 'SELECT "id", "op" FROM "ranked"'
    assert "CAST(\"op\" AS varchar) <> 'D'" in dropped


def test_names_and_markers_are_quoted():
    sql = dataset_sql("u", "trials", ['we"ird', "op"], DeltaConvention(('we"ird',), "op", "it's"),
                      False)
    assert '"we""ird"' in sql and "'it''s'" in sql


def test_without_a_convention_the_newest_snapshot_is_read_as_it_is():
    sql = dataset_sql("u", "trials", ["id"], None, False)
    assert sql.endswith('SELECT "id" FROM "live"') and "row_number" not in sql


def test_a_column_named_like_a_partition_key_is_refused():
    with pytest.raises(CatalogError, match="commit_seq"):
        dataset_sql("u", "trials", ["id", "Commit_Seq"], None, False)


def test_the_definition_unifies_the_schemas_in_commit_order():
    first = pa.schema([("id", pa.int32()), ("val", pa.string())])
    later = pa.schema([("id", pa.int64()), ("op", pa.string()), ("at", pa.timestamp("us"))])
    updates = [committed(2, "delta", 2, later), committed(1, "snapshot", 1, first)]
    definition = define_dataset("dev01", RECORD, updates)
    assert definition.table_columns == (("id", "bigint"), ("val", "string"), ("op", "string"),
                                        ("at", "timestamp"))
    assert [(n, t) for n, _, t in definition.view_columns] == \
        [("id", "bigint"), ("val", "varchar"), ("at", "timestamp(3)")]
    assert '"edl_dev01_internal_updates"."trials"' in definition.sql
    assert definition.version == (2, 2)
    as_of_first = define_dataset("dev01", RECORD, updates, as_of="1")
    assert [n for n, _ in as_of_first.table_columns] == ["id", "val"]
    assert '"commit_seq" <= 1' in as_of_first.sql


@pytest.mark.parametrize("arrow, trino", [
    (pa.int32(), "integer"), (pa.float32(), "real"), (pa.decimal128(12, 3), "decimal(12,3)"),
    (pa.date32(), "date"), (pa.timestamp("ns", tz="UTC"), "timestamp(3)"),
    (pa.binary(), "varbinary"), (pa.list_(pa.string()), "array(varchar)"),
    (pa.struct([("a b", pa.int64())]), 'row("a b" bigint)'), (pa.null(), "varchar")])
def test_trino_types(arrow, trino):
    assert trino_type(arrow) == trino
