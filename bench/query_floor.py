"""The floor of bench 7 as a user runs it: one Python process, DuckDB over pyarrow.

    python bench/query_floor.py < job.json     # prints the rows' total count

`job.json`: the endpoint, the region, the credentials the broker vended, the parts
(`bucket/key`) and the SQL over the table `parts`. Nothing of EDL is imported: this is what a
user who knows where the files are would write instead of `edl-api query`.
"""

import json
import sys
from urllib.parse import urlparse

import duckdb
import pyarrow.dataset as pads
from pyarrow import fs


def main() -> int:
    job = json.load(sys.stdin)
    url = urlparse(job["endpoint"])
    s3 = fs.S3FileSystem(region=job["region"], endpoint_override=url.netloc, scheme=url.scheme,
                         access_key=job["access_key"], secret_key=job["secret_key"],
                         session_token=job["session_token"])
    con = duckdb.connect()
    con.register("parts", pads.dataset(job["paths"], filesystem=s3, format="parquet"))
    rows = con.execute(job["sql"]).fetchall()
    con.close()
    print(sum(r[1] for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
