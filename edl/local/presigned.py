"""Presigned S3 URLs on the local cloud, under IAM enforcement.

moto authenticates a request only from its `Authorization` header: a presigned URL (SigV4 query
authentication, as `generate_presigned_url` makes for the upload endpoint) makes it fail with
HTTP 500 once enforcement is on (measured, moto 5.2). This WSGI middleware sits in front of moto
in the runtime and does what S3 does with such a URL: it checks the query signature and expiry
against the key's secret (`api_auth.MotoKeyStore`), then hands the request to moto signed the
ordinary way with the same key, so moto authorises it as the URL's signer, exactly as S3 would.
A URL with a wrong signature, an unknown key or past its expiry gets S3's 403 error.

What the signer did not sign does not pass either, as in S3: a request carrying an `x-amz-*`
header that is not in `X-Amz-SignedHeaders` (an ACL, tags, metadata, encryption settings the
holder of the URL chose) is refused, and so is an `X-Amz-Expires` over a week (604,800 s). A
presigned request may not copy (`x-amz-copy-source`), signed or not: moto authorises a copy on
its destination only, so a URL to upload one object would read any object of the account.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edl.local.api_auth import KeyStore

log = logging.getLogger("edl.local.presigned")

_AUTH_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
MAX_EXPIRES_SECONDS = 604800  # a week, S3's limit for a SigV4 presigned URL
_AMZ_ENVIRON = "HTTP_X_AMZ_"
_COPY_SOURCE_ENVIRON = "HTTP_X_AMZ_COPY_SOURCE"


def _s3_error(start_response, code: str, message: str, extra: str = "") -> list[bytes]:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message>{extra}</Error>").encode()
    start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def _unsigned_amz_headers(environ: dict, signed_headers: list[str]) -> list[str]:
    """The request's `x-amz-*` headers that the URL's signature does not cover. Compared in
    WSGI's spelling, where `x-amz-acl` and `x_amz_acl` are one header, as moto reads them."""
    signed = {"HTTP_" + name.upper().replace("-", "_") for name in signed_headers}
    return sorted(key[5:].lower().replace("_", "-") for key in environ
                  if key.startswith(_AMZ_ENVIRON) and key not in signed)


class PresignedUrls:
    """Verifies presigned URLs and passes them on to moto with header authentication."""

    def __init__(self, app, keys: KeyStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.app = app
        self.keys = keys
        self.clock = clock

    def __call__(self, environ: dict, start_response):
        query = environ.get("QUERY_STRING", "")
        if "X-Amz-Signature=" not in query or environ.get("HTTP_AUTHORIZATION"):
            return self.app(environ, start_response)
        params = dict(parse_qsl(query, keep_blank_values=True))
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            return self.app(environ, start_response)
        try:
            access_key, _date, region, service, _ = params["X-Amz-Credential"].split("/")
            signed_at = datetime.strptime(params["X-Amz-Date"], _AMZ_DATE).replace(
                tzinfo=UTC)
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            return _s3_error(start_response, "AuthorizationQueryParametersError",
                             "the presigned URL's X-Amz-* parameters are incomplete")
        if expires > MAX_EXPIRES_SECONDS or expires < 0:
            return _s3_error(start_response, "AuthorizationQueryParametersError",
                             "X-Amz-Expires must be less than a week (in seconds) that is; "
                             f"{MAX_EXPIRES_SECONDS}, and not negative")
        signed_headers = params.get("X-Amz-SignedHeaders", "host").split(";")
        if _COPY_SOURCE_ENVIRON in environ:
            return _s3_error(start_response, "AccessDenied",
                             "a presigned URL cannot copy (x-amz-copy-source) on the local cloud; "
                             "copy with a request signed by a key allowed to read the source")
        not_signed = _unsigned_amz_headers(environ, signed_headers)
        if not_signed:
            return _s3_error(start_response, "AccessDenied",
                             "There were headers present in the request which were not signed",
                             "".join(f"<HeadersNotSigned>{escape(h)}</HeadersNotSigned>"
                                     for h in not_signed))
        key = self.keys.find(access_key)
        if key is None or key.session_token != params.get("X-Amz-Security-Token"):
            return _s3_error(start_response, "InvalidAccessKeyId",
                             "The AWS Access Key Id you provided does not exist in our records.")
        if self.clock() > signed_at + timedelta(seconds=expires):
            return _s3_error(start_response, "AccessDenied", "Request has expired")
        credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token)
        host = environ.get("HTTP_HOST", "")
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        path = raw.split("?", 1)[0]
        # The URL's signature covers its query without X-Amz-Signature, as sent.
        unsigned = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Signature="))
        headers = {"host": host}
        for name in signed_headers:
            if name != "host":
                value = environ.get("HTTP_" + name.upper().replace("-", "_"))
                if value is not None:
                    headers[name] = value
        check = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{host}{path}?{unsigned}",
                           headers=headers)
        check.context["timestamp"] = params["X-Amz-Date"]
        signer = S3SigV4QueryAuth(credentials, service, region, expires=expires)
        expected = signer.signature(signer.string_to_sign(check, signer.canonical_request(check)),
                                    check)
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return _s3_error(start_response, "SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature "
                             "you provided.")
        return self.app(self._header_signed(environ, credentials, region, host, path),
                        start_response)

    @staticmethod
    def _header_signed(environ: dict, credentials: Credentials, region: str, host: str,
                       path: str) -> dict:
        """The same request without the URL's auth parameters, signed in the header form."""
        rest = "&".join(p for p in environ.get("QUERY_STRING", "").split("&")
                        if p and p.split("=", 1)[0] not in _AUTH_PARAMS)
        url = f"http://{host}{path}" + (f"?{rest}" if rest else "")
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=url,
                             headers={"host": host, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(credentials, "s3", region).add_auth(request)
        environ = dict(environ)
        environ["QUERY_STRING"] = rest
        for name in ("RAW_URI", "REQUEST_URI"):
            if name in environ:
                environ[name] = path + (f"?{rest}" if rest else "")
        for name, value in request.headers.items():
            if name.lower() != "host":
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        return environ
