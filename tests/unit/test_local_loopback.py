"""Which `Host` headers the local cloud's servers answer (`edl.local.loopback`)."""

from __future__ import annotations

import pytest

from edl.local.loopback import LoopbackOnly, is_loopback_host


@pytest.mark.parametrize("host", ["127.0.0.1:4566", "localhost:4566", "LOCALHOST:4566",
                                  "bucket.localhost:4566", "[::1]:4566"])
def test_the_loopback_with_the_servers_port_is_answered(host):
    assert is_loopback_host(host, 4566)


@pytest.mark.parametrize("host", [
    "attacker.example:4566",          # DNS rebinding: the page's own name
    "127.0.0.1.nip.io:4566", "localhost.attacker.example:4566",
    "127.0.0.1:4567", "127.0.0.1",    # another port; no port means 80
    "[::1]", "[::1]x:4566", "", "10.0.0.5:4566",
])
def test_any_other_host_is_refused(host):
    assert not is_loopback_host(host, 4566)


def test_refused_requests_never_reach_the_app_and_cors_headers_never_leave_it():
    calls = []

    def app(environ, start_response):
        calls.append(environ["HTTP_HOST"])
        start_response("200 OK", [("Access-Control-Allow-Origin", "http://attacker.example"),
                                  ("Access-Control-Allow-Methods", "PUT"),
                                  ("Content-Type", "text/plain")])
        return [b"ok"]

    front = LoopbackOnly(app, lambda: 4566)
    answers = []
    def start(status, headers, exc_info=None):
        answers.append((status, headers))

    assert b"ForbiddenHost" in b"".join(front({"HTTP_HOST": "attacker.example:4566"}, start))
    assert calls == [] and answers[-1][0] == "403 Forbidden"
    assert front({"HTTP_HOST": "127.0.0.1:4566"}, start) == [b"ok"]
    assert answers[-1] == ("200 OK", [("Content-Type", "text/plain")])
