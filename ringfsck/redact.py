"""Credentials never leave the process: one function strips them from whatever is shown or stored.

An operator may give a URL with credentials in it (``http://user:pass@srebuildd:81``, an S3
endpoint with userinfo, a presigned URL with ``X-Amz-Signature``). Requests still use them;
every location, message, source record, Parquet ``source`` column, run summary and report
goes through :func:`redact` first, so a store or a pasted error log never holds a secret.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : everything up to the last "@" of the authority (a password may hold an
# unencoded "@"; the authority ends at the first "/", "?", "#" or blank).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
# Query parameters that carry a secret (sproxyd/srebuildd's spass, presigned S3 URLs' signature
# and credential, tokens): the value is replaced, the name kept so the reader knows one was given.
_SECRET_PARAMETERS = (
    "spass",
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "access_token",
    "auth",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
)
_SECRET_QUERY = re.compile(r"(?P<name>[?&;](?:" + "|".join(map(re.escape, _SECRET_PARAMETERS)) + r")=)[^&#\s]*", re.IGNORECASE)
REDACTED = "REDACTED"


def redact(text: str) -> str:
    """``text`` (a URL, a location or a message holding URLs) without URL userinfo or secret query values."""
    if "://" not in text and "=" not in text:
        return text  # the common case (a path, a message without a URL) costs nothing
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _SECRET_QUERY.sub(rf"\g<name>{REDACTED}", text)
