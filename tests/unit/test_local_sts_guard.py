"""The session limits of the local cloud's STS (`edl.local.sts_guard`), without a server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edl.local import sts_guard


@pytest.mark.parametrize("stored, limit", [(43200, 43200), ("7200", 7200),
                                           ("EDL's reader role", 3600), (None, 3600)])
def test_a_roles_max_session_duration_is_read_as_moto_stores_it(stored, limit):
    """moto's CloudFormation update stores the role's RoleDescription there (moto 5.2)."""
    role = SimpleNamespace(max_session_duration=stored)
    assert sts_guard._max_session_duration(role) == limit


def test_a_role_arn_that_is_not_one_finds_no_role():
    for arn in ("", "reader", "arn:aws:iam::123:role/reader", "arn:aws:s3:::bucket"):
        assert sts_guard.find_role(arn) is None
        refusal = sts_guard.check_assume_role(arn, 3600)
        assert refusal is not None and refusal.code == "AccessDenied"
