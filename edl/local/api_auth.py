"""Who calls the local REST API: SigV4 verification against the local cloud's own IAM.

API Gateway with IAM authorization checks a request's Signature Version 4 and hands the Lambda
handler the caller's identity (`requestContext.identity`). The local runtime does the same: it
parses the `Authorization` header, looks the access key up in moto's IAM (users' keys) or STS
(assumed roles' temporary keys, with their `X-Amz-Security-Token`, while the session lasts and its
role is the one it was minted for: `sts_guard.session_is_current`), recomputes the signature with
botocore's `SigV4Auth` over the request as received, and refuses a request whose `X-Amz-Date` is
more than five minutes off. Every refusal is an `AuthError` carrying the HTTP status and the
error code API Gateway (or IAM) uses for it.

The runtime process *is* the moto process, so keys are looked up in moto's in-process backends
(`MotoKeyStore`) rather than through an API: AWS has no API that returns a secret key, and
neither should the local cloud. Tests hand in any other `KeyStore`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
MAX_CLOCK_SKEW_SECONDS = 300
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class AuthError(Exception):
    """A request the API refuses before any handler runs."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class CallerKey:
    """An access key the local cloud knows, and who it belongs to."""

    access_key_id: str
    secret_access_key: str
    arn: str              # arn:aws:iam::…:user/alice or arn:aws:sts::…:assumed-role/R/session
    principal_id: str     # AIDA… for a user, AROA…:session for an assumed role
    account_id: str
    session_token: str | None = None


@dataclass(frozen=True)
class Caller:
    """The verified caller, as API Gateway puts it in `requestContext.identity`."""

    key: CallerKey
    source_ip: str
    user_agent: str

    def identity(self) -> dict:
        return {
            "accountId": self.key.account_id,
            "caller": self.key.principal_id,
            "user": self.key.principal_id,
            "userArn": self.key.arn,
            "accessKey": self.key.access_key_id,
            "sourceIp": self.source_ip,
            "userAgent": self.user_agent,
            "cognitoIdentityPoolId": None,
            "cognitoIdentityId": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
        }


class KeyStore(Protocol):
    def find(self, access_key_id: str) -> CallerKey | None: ...


class MotoKeyStore:
    """Access keys of the moto backends running in this process, for one account.

    Uses moto internals (`iam_backends[account]["aws"].users[*].access_keys`, and the sessions
    of `sts_backends`, through `sts_guard.find_session`), the same ones moto's own IAM
    enforcement reads in `moto/iam/access_control.py`; stable across moto 4 and 5.
    """

    def __init__(self, account_id: str, partition: str = "aws") -> None:
        self.account_id = account_id
        self.partition = partition

    def find(self, access_key_id: str) -> CallerKey | None:
        return self._find_user_key(access_key_id) or self._find_role_key(access_key_id)

    def _find_user_key(self, access_key_id: str) -> CallerKey | None:
        from moto.iam.models import iam_backends

        backend = iam_backends[self.account_id][self.partition]
        for user in list(backend.users.values()):  # a copy: other threads create users
            for key in list(user.access_keys):
                if key.access_key_id == access_key_id and key.status == "Active":
                    return CallerKey(access_key_id, key.secret_access_key, user.arn, user.id,
                                     self.account_id)
        return None

    def _find_role_key(self, access_key_id: str) -> CallerKey | None:
        from moto.core.utils import utcnow

        from edl.local.sts_guard import find_session, session_is_current

        role = find_session(access_key_id)
        if role is None or role.account_id != self.account_id or role.partition != self.partition:
            return None
        if role.expiration <= utcnow() or not session_is_current(role):
            return None
        return CallerKey(access_key_id, role.secret_access_key, role.arn, role.user_id,
                         self.account_id, session_token=role.session_token)


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs of an HTTP request, exactly as it was received."""

    method: str
    url: str                     # scheme://host + the raw path and query as sent
    headers: Mapping[str, str]   # case-insensitive lookups are done by the verifier
    body: bytes
    source_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def parse_authorization(value: str | None) -> _Authorization:
    """`AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/execute-api/aws4_request,
    SignedHeaders=host;x-amz-date, Signature=…`"""
    if not value:
        raise AuthError("MissingAuthenticationToken", "Missing Authentication Token")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError("IncompleteSignatureException",
                        f"Authorization header requires the {ALGORITHM} algorithm")
    parts = {}
    for item in rest.split(","):
        name, sep, text = item.strip().partition("=")
        if sep:
            parts[name] = text
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not parts.get(n)]
    if missing:
        raise AuthError("IncompleteSignatureException",
                        f"Authorization header requires {', '.join(missing)}")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AuthError("IncompleteSignatureException",
                        "Credential must be AKID/date/region/service/aws4_request")
    return _Authorization(scope[0], scope[1], scope[2], scope[3],
                          tuple(parts["SignedHeaders"].split(";")), parts["Signature"])


class SigV4Verifier:
    """Checks a request's SigV4 signature for one service (the REST API's `execute-api`, or
    the local Athena's `athena`) in one region."""

    def __init__(self, keys: KeyStore, region: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_skew_seconds: int = MAX_CLOCK_SKEW_SECONDS, service: str = SERVICE) -> None:
        self.keys = keys
        self.region = region
        self.clock = clock
        self.max_skew_seconds = max_skew_seconds
        self.service = service

    def verify(self, request: SignedRequest) -> Caller:
        auth = parse_authorization(_header(request.headers, "Authorization"))
        amz_date = self._check_date(request, auth)
        if auth.service != self.service or auth.region != self.region:
            raise AuthError(
                "InvalidSignatureException",
                f"Credential should be scoped to {self.region}/{self.service}, "
                f"not {auth.region}/{auth.service}")
        if "host" not in auth.signed_headers:
            raise AuthError("IncompleteSignatureException", "SignedHeaders must include host")
        key = self.keys.find(auth.access_key_id)
        if key is None:
            raise AuthError("InvalidClientTokenId",
                            "The security token included in the request is invalid.")
        token = _header(request.headers, "X-Amz-Security-Token")
        if key.session_token is not None and token != key.session_token:
            raise AuthError("InvalidClientTokenId",
                            "The security token included in the request is invalid.")
        if key.session_token is None and token is not None:
            raise AuthError("InvalidClientTokenId",
                            "The security token included in the request is invalid.")
        expected = self._signature(request, auth, key, amz_date)
        if not hmac.compare_digest(expected, auth.signature):
            raise AuthError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.")
        user_agent = _header(request.headers, "User-Agent") or ""
        return Caller(key, request.source_ip, user_agent)

    def _check_date(self, request: SignedRequest, auth: _Authorization) -> str:
        amz_date = _header(request.headers, "X-Amz-Date")
        if not amz_date or "x-amz-date" not in auth.signed_headers:
            raise AuthError("IncompleteSignatureException",
                            "the request must carry a signed X-Amz-Date header")
        try:
            when = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise AuthError("IncompleteSignatureException",
                            f"X-Amz-Date {amz_date!r} is not in the form 20260101T120000Z") from None
        if amz_date[:8] != auth.date:
            raise AuthError("SignatureDoesNotMatch",
                            "the credential scope's date is not the date of X-Amz-Date")
        skew = abs((self.clock() - when).total_seconds())
        if skew > self.max_skew_seconds:
            raise AuthError(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is more than {self.max_skew_seconds // 60} "
                "minutes away from the server's time")
        return amz_date

    def _signature(self, request: SignedRequest, auth: _Authorization, key: CallerKey,
                   amz_date: str) -> str:
        claimed_hash = _header(request.headers, "X-Amz-Content-SHA256")
        if claimed_hash is not None and claimed_hash != hashlib.sha256(request.body).hexdigest():
            # botocore signs the claimed hash as given: it must be the body's, or a signature
            # could cover one body and arrive with another.
            raise AuthError("SignatureDoesNotMatch",
                            "X-Amz-Content-SHA256 is not the hash of the request body")
        signed = {}
        for name in auth.signed_headers:
            value = _header(request.headers, name)
            if value is not None:
                signed[name] = value
        rebuilt = AWSRequest(method=request.method, url=request.url, data=request.body,
                             headers=signed)
        rebuilt.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(key.access_key_id, key.secret_access_key,
                                       key.session_token), auth.service, auth.region)
        canonical = signer.canonical_request(rebuilt)
        return signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
