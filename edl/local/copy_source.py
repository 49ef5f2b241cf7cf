"""An S3 copy on the local cloud is authorised on its source too, as in S3.

moto authorises `CopyObject` and `UploadPartCopy` (a `PUT` with `x-amz-copy-source`) on the
destination only (measured, DESIGN §8): whoever may write one prefix could copy into it any
object of the account, and read it there - a dataset's writer role, say, the rows of a sensitive
dataset it was never granted. S3 also requires `s3:GetObject` on the source.

`CopySourceCheck` sits in front of moto: for a copy signed in the header form, it asks moto, in
this process, for a `HEAD` of the source signed with the same key (the runtime holds every key,
`api_auth.MotoKeyStore`) - the request moto authorises as `s3:GetObject` on that object. Denied
there, the copy is refused with S3's `AccessDenied`; otherwise moto carries out the copy, checking
the original request's signature and the destination as before. (Presigned copies are refused
outright, in `presigned.py`.) The probe runs before moto checks the copy's signature, so a caller
who knows only an access key id learns whether that key may read the source (AccessDenied here,
SignatureDoesNotMatch from moto) - never the object itself.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.test import EnvironBuilder

from edl.local.api_auth import KeyStore
from edl.local.loopback import xml_error

log = logging.getLogger("edl.local.copy_source")


def _scope(authorization: str) -> tuple[str, str, str] | None:
    """(access key, region, service) of a SigV4 `Authorization` header, or None."""
    try:
        credential = authorization.split("Credential=", 1)[1].split(",", 1)[0].strip()
        access_key, _date, region, service, _terminator = credential.split("/")
    except (IndexError, ValueError):
        return None
    return access_key, region, service


class CopySourceCheck:
    """WSGI middleware in front of moto: a copy needs read access to its source."""

    def __init__(self, app, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    def __call__(self, environ: dict, start_response):
        source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        scope = _scope(environ.get("HTTP_AUTHORIZATION", ""))
        if source is None or scope is None or scope[2] != "s3":
            return self.app(environ, start_response)  # not a copy, or moto refuses it anyway
        access_key, region, _service = scope
        key = self.keys.find(access_key)
        if key is None:
            return self.app(environ, start_response)  # moto refuses the unknown key
        bucket, _, rest = unquote(source).lstrip("/").partition("/")
        object_key, _, version = rest.partition("?versionId=")
        credentials = Credentials(key.access_key_id, key.secret_access_key, key.session_token)
        if self._may_read(environ, credentials, region, bucket, object_key, version):
            return self.app(environ, start_response)
        log.info("copy-source - %s may not read s3://%s/%s: copy refused", key.arn, bucket,
                 object_key)
        content_type, body = xml_error(
            "AccessDenied",
            f"Access Denied: {key.arn} may not read the copy source s3://{bucket}/{object_key}")
        start_response("403 Forbidden", [("Content-Type", content_type),
                                         ("Content-Length", str(len(body)))])
        return [body]

    def _may_read(self, environ: dict, credentials: Credentials, region: str, bucket: str,
                  object_key: str, version: str) -> bool:
        """Whether moto lets these credentials `HEAD` the source (a missing object is for the
        copy itself to report)."""
        host = environ.get("HTTP_HOST", "127.0.0.1")
        path = f"/{quote(bucket)}/{quote(object_key)}"
        query = f"versionId={quote(version)}" if version else ""
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method="HEAD", url=url,
                             headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(credentials, "s3", region).add_auth(request)
        probe = EnvironBuilder(method="HEAD", base_url=f"http://{host}", path=path,
                               query_string=query, headers=dict(request.headers)).get_environ()
        answer: list[str] = []
        body = self.app(probe, lambda status, headers, exc_info=None: answer.append(status))
        for _chunk in body:  # drain, so the response is complete and closed
            pass
        getattr(body, "close", lambda: None)()
        return not answer[0].startswith("403")
