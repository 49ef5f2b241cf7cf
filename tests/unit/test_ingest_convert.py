"""One raw file to one parquet part: values, types, and errors that name the file and line."""

from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edl.core_resources.pipelines.ingest.convert import convert_file
from edl.core_resources.pipelines.ingest.errors import (
    ArchiveBombError,
    EmptyFileError,
    EncodingError,
    IngestError,
    MalformedFileError,
    UnknownFormatError,
)
from edl.core_resources.pipelines.ingest.formats import FormatOptions, detect_format
from edl.core_resources.pipelines.ingest.limits import ArchiveLimits, MiB
from edl.utils.schemas import SchemaConflictError

DEFAULT_OPTIONS, DEFAULT_LIMITS = FormatOptions(), ArchiveLimits()


def convert(tmp_path: Path, name: str, data: bytes, options=DEFAULT_OPTIONS,
            limits=DEFAULT_LIMITS):
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / (name + ".parquet")
    result = convert_file(options.format_of(name), name, functools.partial(open, src, "rb"),
                          functools.partial(open, out, "wb"), options, limits)
    return result, pq.read_table(out)


def test_csv_with_bom_quoted_newlines_and_types(tmp_path):
    data = '\ufeffid,name,score\n1,"Smith, J.",1.5\n2,"two\nlines",2\n'.encode()
    result, table = convert(tmp_path, "a.csv", data)
    assert result.rows == 2
    assert table.column_names == ["id", "name", "score"]
    assert table.schema.field("id").type == pa.int64()
    assert table.column("name").to_pylist() == ["Smith, J.", "two\nlines"]
    assert table.column("score").to_pylist() == [1.5, 2.0]


def test_latin1_csv_decodes_when_declared(tmp_path):
    _, table = convert(tmp_path, "l.csv", "id;ville\n1;Besançon\n".encode("latin-1"),
                       FormatOptions(delimiter=";", encoding="latin-1"))
    assert table.column("ville").to_pylist() == ["Besançon"]


def test_tsv_uses_tabs(tmp_path):
    _, table = convert(tmp_path, "t.tsv", b"a\tb\n1\tx,y\n")
    assert table.column("b").to_pylist() == ["x,y"]


def test_wrong_field_count_names_file_and_line(tmp_path):
    data = b'id,name\n1,"a\nb"\n2,x\n3,y,extra\n4,z\n'
    with pytest.raises(MalformedFileError, match=r"bad\.csv line 5: expected 2 fields, found 3"):
        convert(tmp_path, "bad.csv", data)


def test_invalid_utf8_names_file_and_line(tmp_path):
    with pytest.raises(EncodingError, match=r"enc\.csv line 3: .*not valid utf-8") as err:
        convert(tmp_path, "enc.csv", b"id,name\n1,ok\n2,caf\xe9\n")
    assert "--encoding" in err.value.hint


def test_invalid_utf8_after_the_first_block_is_found(tmp_path):
    body = b"id,name\n" + b"".join(b"%d,x\n" % i for i in range(1_000_000)) + b"7,\xff\n"
    with pytest.raises(EncodingError, match=r"line 1000002"):
        convert(tmp_path, "late.csv", body)


def test_a_column_widens_when_a_later_block_needs_it(tmp_path):
    rows = b"".join(b"%d,%d\n" % (i, i) for i in range(1_000_000))
    result, table = convert(tmp_path, "w.csv", b"a,b\n" + rows + b"2.5,text\n")
    assert result.rows == 1_000_001
    assert table.schema.field("a").type == pa.float64()
    assert table.schema.field("b").type == pa.string()
    assert table.column("a")[-1].as_py() == 2.5 and table.column("b")[0].as_py() == "0"


def test_empty_csv_is_refused(tmp_path):
    with pytest.raises(EmptyFileError, match=re.escape("e.csv")):
        convert(tmp_path, "e.csv", b"\n\n")


def test_header_only_csv_has_no_rows(tmp_path):
    result, table = convert(tmp_path, "h.csv", b"a,b\n")
    assert result.rows == 0 and table.column_names == ["a", "b"]


def test_duplicate_column_names_are_refused(tmp_path):
    with pytest.raises(SchemaConflictError, match="'a' appears twice"):
        convert(tmp_path, "d.csv", b"a,a\n1,2\n")


def test_json_lines_with_a_field_appearing_late_and_widening(tmp_path):
    lines = [json.dumps({"id": i, "v": i}) for i in range(300_000)]
    lines.append(json.dumps({"id": 1, "v": 0.5, "extra": "x"}))
    result, table = convert(tmp_path, "e.jsonl", ("\n".join(lines) + "\n").encode())
    assert result.rows == 300_001
    assert table.schema.field("v").type == pa.float64()
    assert table.column("extra").to_pylist()[-2:] == [None, "x"]


def test_bad_json_line_is_named(tmp_path):
    with pytest.raises(MalformedFileError, match=r"b\.json line 3"):
        convert(tmp_path, "b.json", b'{"a":1}\n{"a":2}\n{"a":\n')


def test_invalid_utf8_in_json_is_named(tmp_path):
    with pytest.raises(EncodingError, match=r"j\.jsonl line 2"):
        convert(tmp_path, "j.jsonl", b'{"a":"x"}\n{"a":"\xff"}\n')


def test_parquet_passes_through(tmp_path):
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2], "t": pa.array(["x", "y"])}), buf)
    result, table = convert(tmp_path, "p.parquet", buf.getvalue())
    assert result.rows == 2 and table.column("t").to_pylist() == ["x", "y"]


def test_corrupt_parquet_is_refused(tmp_path):
    with pytest.raises(MalformedFileError, match=re.escape("p.parquet")):
        convert(tmp_path, "p.parquet", b"PAR1 nonsense")


def test_excel_first_sheet(tmp_path):
    import datetime

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "name", "when", "mixed"])
    sheet.append([1, "alice", datetime.datetime(2024, 1, 2), 5])
    sheet.append([2, "bob", datetime.datetime(2024, 3, 4), "five"])
    buf = io.BytesIO()
    book.save(buf)
    result, table = convert(tmp_path, "book.xlsx", buf.getvalue())
    assert result.rows == 2
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("when").to_pylist()[1] == datetime.datetime(2024, 3, 4)
    assert table.column("mixed").to_pylist() == ["5", "five"]


def test_json_lines_without_any_line_break_stop_at_the_line_limit(tmp_path):
    one_line = b'{"id": 1, "text": "' + b"x" * (3 * MiB) + b'"}'
    with pytest.raises(MalformedFileError, match=r"one.jsonl line 1: longer than 1 MiB"):
        convert(tmp_path, "one.jsonl", one_line, limits=ArchiveLimits(max_line_bytes=1 * MiB))
    result, _ = convert(tmp_path, "one.jsonl", one_line + b"\n",
                        limits=ArchiveLimits(max_line_bytes=4 * MiB))
    assert result.rows == 1


def _workbook(padding: bytes = b"") -> bytes:
    """An .xlsx of one sheet; `padding` is appended (as XML whitespace) to the sheet's XML."""
    import zipfile

    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["id"])
    book.active.append([1])
    plain = io.BytesIO()
    book.save(plain)
    padded = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, \
            zipfile.ZipFile(padded, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            body = src.read(info)
            out.writestr(info.filename, body + padding if info.filename.endswith("sheet1.xml")
                         else body)
    return padded.getvalue()


def test_an_xlsx_whose_inner_zip_is_a_bomb_is_refused_before_it_is_opened(tmp_path):
    limits = ArchiveLimits(ratio_grace_bytes=1 * MiB)
    bomb = _workbook(padding=b" " * (16 * MiB))
    with pytest.raises(ArchiveBombError,
                       match=re.escape("book.xlsx: declares 16 MiB uncompressed")):
        convert(tmp_path, "book.xlsx", bomb, limits=limits)
    _result, table = convert(tmp_path, "ok.xlsx", _workbook(), limits=limits)
    assert table.column("id").to_pylist() == [1]


@pytest.mark.parametrize("options, message", [
    ({"encoding": "base64"}, "not a text encoding"),
    ({"encoding": "zlib_codec"}, "not a text encoding"),
    ({"delimiter": "\n"}, "line break"),
    ({"delimiter": '"'}, "quote"),
    ({"quote": "\r"}, "line break"),
    ({"format": "xml"}, "unknown format 'xml'"),
])
def test_bad_options_are_refused_when_made(options, message):
    with pytest.raises(IngestError, match=message):
        FormatOptions(**options)


def test_a_given_format_holds_for_any_file_name(tmp_path):
    _result, table = convert(tmp_path, "export.dat", b"id;name\n1;a\n",
                            FormatOptions(format="csv", delimiter=";"))
    assert table.to_pylist() == [{"id": 1, "name": "a"}]
    with pytest.raises(UnknownFormatError, match=re.escape("export.dat")):
        FormatOptions().format_of("export.dat")


def test_unknown_format_names_the_file():
    with pytest.raises(UnknownFormatError, match=re.escape("notes.txt")):
        detect_format("sites/notes.txt")


def test_quoted_newlines_across_block_boundaries(tmp_path, monkeypatch):
    """Quoted line breaks that straddle pyarrow's blocks still give the same rows and types."""
    import pyarrow.csv as pacsv

    from edl.core_resources.pipelines.ingest import convert as convert_module

    monkeypatch.setattr(convert_module, "CSV_BLOCK", 256)
    data = b"id,note,score\n" + b"".join(
        (b'%d,"first line\nsecond, line",%d.5\n' if i % 7 == 3 else b'%d,plain %d,%d.5\n')
        % ((i, i) if i % 7 == 3 else (i, i, i)) for i in range(2000))
    expected = pacsv.read_csv(io.BytesIO(data),
                              parse_options=pacsv.ParseOptions(newlines_in_values=True))
    result, table = convert(tmp_path, "multi.csv", data)
    assert result.rows == 2000
    assert table.equals(expected)
    assert table.column("note")[3].as_py() == "first line\nsecond, line"


def test_hashing_reader_checksums_what_the_conversion_reads(tmp_path):
    import hashlib

    from edl.core_resources.pipelines.ingest.tasks import HashingReader

    data = b"id,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(50_000))
    src = tmp_path / "h.csv"
    src.write_bytes(data)
    readers = []

    def open_input():
        readers.append(HashingReader(src.open("rb")))
        return readers[-1]

    result = convert_file("csv", "h.csv", open_input,
                          functools.partial(open, tmp_path / "h.parquet", "wb"))
    assert result.rows == 50_000
    assert readers[0].complete
    assert (readers[0].size, readers[0].sha256) == (len(data), hashlib.sha256(data).hexdigest())
