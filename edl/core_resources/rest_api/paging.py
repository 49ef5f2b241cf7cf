"""Page tokens: opaque and tamper-proof (HMAC-signed), and the key that signs them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re

from botocore.exceptions import ClientError

from edl.core_resources.rest_api.errors import BadRequest


class PageTokens:
    """Opaque, tamper-proof pagination tokens: the position (a DynamoDB key) and the listing it
    belongs to, HMAC-signed. A token changed, truncated, or used on another listing is refused."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the page token key must have at least 16 bytes")
        self._key = key

    def encode(self, scope: str, position: dict[str, str]) -> str:
        payload = json.dumps({"s": scope, "p": position}, separators=(",", ":"),
                             sort_keys=True).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        return f"{_b64(payload)}.{_b64(mac)}"

    def decode(self, scope: str, token: str) -> dict[str, str]:
        invalid = BadRequest("invalid page token", code="invalid_page_token")
        try:
            payload_text, mac_text = token.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except (ValueError, binascii.Error):
            raise invalid from None
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise invalid
        data = json.loads(payload)
        if data.get("s") != scope or not isinstance(data.get("p"), dict):
            raise invalid
        return data["p"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def page_token_key_from_ssm(ssm, name: str) -> bytes:
    """The key that signs page tokens: a SecureString parameter, created on first use (a race
    between two cold starts is settled by `Overwrite=False`: the loser reads the winner's)."""
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ParameterNotFound":
            raise
        try:
            ssm.put_parameter(Name=name, Value=os.urandom(32).hex(), Type="SecureString",
                              Overwrite=False, Description="EDL REST API page-token key")
        except ClientError as put_exc:
            if put_exc.response["Error"]["Code"] != "ParameterAlreadyExists":
                raise
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return value.encode()
