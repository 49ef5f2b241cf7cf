"""Who the ingest command acts as: the ingest job role on the local instance (as Glue runs the
job as that role in AWS), its own identity elsewhere, or what --role-arn / --no-role say."""

from __future__ import annotations

import pytest

from edl.core_resources.pipelines.ingest.__main__ import job_role_arn, parse_args

SOURCE = ("--dataset", "trials", "--source", "s3://drop/a.csv")


@pytest.mark.parametrize("extra, expected", [
    ((), "arn:aws:iam::123456789012:role/edl-local-ingest-job"),
    (("--role-arn", "arn:aws:iam::123456789012:role/other"),
     "arn:aws:iam::123456789012:role/other"),
    (("--no-role",), None),
])
def test_the_local_instance_runs_as_the_ingest_job_role(extra, expected):
    assert job_role_arn(parse_args(["--instance", "local", *SOURCE, *extra])) == expected


def test_in_the_cloud_the_job_already_is_its_role():
    assert job_role_arn(parse_args(["--instance", "dev01", *SOURCE])) is None
