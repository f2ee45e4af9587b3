"""RING key rules (docs/domain.md sections 2 and 3). Pure functions, no I/O.

A RING key (UKS) is 160 bits written as 40 hex characters, compared in
uppercase:

====== ============================================================
chars  field
====== ============================================================
0-5    dispersion (first 24 bits of the hash)
6-21   object id
22-29  volume id / version
30-31  service id
32-37  application specific (ARC: ``k<<6|m`` in 3 hex, ``k+m`` in 2, stripe high nibble)
38     class: 7 = ARC erasure coding, 0-5 = COS replication
39     replica / stripe index (low nibble)
====== ============================================================
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ringfsck.errors import InvalidKeyError

KEY_HEX_LEN = 40
DIGKEY_LEN = 26  # 22 md5 chars + 4 chars of the volume id
MD5_PREFIX_LEN = 22  # first 11 bytes of the md5 of the input key
S3_SERVICE_IDS = ("50", "51")
# bucketd keeps the parts of unfinished multipart uploads in mpuShadowBucket<name>: live data (docs/domain.md section 5).
MPU_SHADOW_PREFIX = "mpuShadowBucket"
SPROXYD_SERVICE_ID = "51"  # what sproxyd writes for S3 data
ARC_CLASS = 7
MAX_COS = 5

_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")
_PROTECTION = re.compile(r"\s*(\d+)\s*\+\s*(\d+)\s*")


@dataclass(frozen=True, slots=True)
class ArcSchema:
    """An ARC erasure-coding schema: k data stripes plus m parity stripes."""

    k: int
    m: int

    def __post_init__(self) -> None:
        # k<<6|m must fit 3 hex digits and k+m 2 hex digits (docs/domain.md section 2).
        if not (1 <= self.k < 64 and 1 <= self.m < 64):
            raise ValueError(f"ARC schema {self.k}+{self.m}: k and m must be between 1 and 63")

    @property
    def stripes(self) -> int:
        return self.k + self.m

    def __str__(self) -> str:
        return f"{self.k}+{self.m}"


def parse_arc(text: str | ArcSchema) -> ArcSchema:
    """Parse an ARC schema such as ``"8+4"``; raise ValueError with a clear message."""
    if isinstance(text, ArcSchema):
        return text
    match = _PROTECTION.fullmatch(str(text))
    if not match:
        raise ValueError(f"invalid ARC protection {text!r}: expected K+M, for example 8+4")
    return ArcSchema(int(match.group(1)), int(match.group(2)))


def parse_cos(value: int | str) -> int:
    """Validate a COS level (0-5; CoS N keeps N+1 copies)."""
    try:
        cos = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid COS protection {value!r}: expected a number from 0 to {MAX_COS}") from None
    if not 0 <= cos <= MAX_COS:
        raise ValueError(f"invalid COS protection {value!r}: expected a number from 0 to {MAX_COS}")
    return cos


def normalize_key(text: str) -> str:
    """Return the key as 40 uppercase hex chars, or raise InvalidKeyError."""
    key = text.strip()
    if len(key) != KEY_HEX_LEN or not _HEX40.fullmatch(key):
        raise InvalidKeyError(f"not a 40-hex-char key: {text!r}")
    return key.upper()


def is_valid_key(text: str) -> bool:
    return len(text) == KEY_HEX_LEN and _HEX40.fullmatch(text) is not None


# A run of this many hex digits in a key that is not a valid 40-hex key: a damaged sproxyd key
# (one byte changed, added or lost always leaves a run of at least 20), not another backend's key.
_DAMAGED_KEY_RUN = re.compile(r"[0-9A-Fa-f]{16}")


def is_other_backend_key(text: str) -> bool:
    """A file export's key that is not an sproxyd key and cannot be a damaged one.

    Exports list the keys of every backend, and those may be any string (``bucket/name``,
    small integers). A text with 16 hex digits in a row is treated as a damaged sproxyd key
    instead (a reject, so the analysis is incomplete): being wrong can only keep data.
    """
    text = text.strip()
    return bool(text) and not is_valid_key(text) and _DAMAGED_KEY_RUN.search(text) is None


def arc_app_specific(schema: ArcSchema | str, stripe: int = 0) -> str:
    """The 6 app-specific chars (32-37) of an ARC chunk key.

    ``k<<6|m`` as 3 hex digits, ``k+m`` as 2 hex digits, then the high nibble
    of the stripe index. For the main chunk (stripe 0) of 8+4: ``2040C0``.
    """
    schema = parse_arc(schema)
    if not 0 <= stripe < 256:
        raise ValueError(f"stripe index {stripe} out of range 0-255")
    return f"{(schema.k << 6) | schema.m:03X}{schema.stripes:02X}{stripe >> 4:X}"


def arc_schema_of(key: str) -> ArcSchema | None:
    """Decode the ARC schema from an ARC key's chars 32-34, None if not ARC or garbled."""
    key = normalize_key(key)
    if key[38] != str(ARC_CLASS):
        return None
    packed = int(key[32:35], 16)
    try:
        return ArcSchema(packed >> 6, packed & 0x3F)
    except ValueError:
        return None


def input_key_md5_prefix(input_key: str) -> str:
    """The 22 uppercase hex chars of md5 over the input key's bytes.

    Leading zero hex digits are stripped and the remainder left-padded to an
    even length, so leading zero *bytes* are not hashed (docs/domain.md section 3).
    """
    key = normalize_key(input_key)
    digits = key.lstrip("0")
    if len(digits) % 2:
        digits = "0" + digits
    return hashlib.md5(bytes.fromhex(digits)).hexdigest()[:MD5_PREFIX_LEN].upper()


def input_key_digkey(input_key: str) -> str:
    """The 26-char digkey an S3 input key matches on (independent of protection)."""
    return input_key_md5_prefix(input_key) + "0000"


def ring_key(
    md5_prefix: str,
    *,
    volume: str = "00000000",
    service: str = SPROXYD_SERVICE_ID,
    app_specific: str,
    klass: int,
    index: int,
) -> str:
    """Assemble a 40-char key from its fields (index is the low nibble, char 39)."""
    key = f"{md5_prefix}{volume}{service}{app_specific}{klass:X}{index & 0xF:X}"
    return normalize_key(key)


def arc_chunk_key(md5_prefix: str, schema: ArcSchema | str, stripe: int = 0, *, service: str = SPROXYD_SERVICE_ID) -> str:
    """The key of ARC stripe ``stripe`` named by the main chunk's md5 prefix.

    The RING also stores each stripe under its own dispersed chunk key; this is
    the key as sproxyd names it (stripe 0 is the main chunk, ending in ``70``).
    """
    return ring_key(md5_prefix, service=service, app_specific=arc_app_specific(schema, stripe), klass=ARC_CLASS, index=stripe)


COS_APP_SPECIFIC = "000000"


def cos_chunk_key(md5_prefix: str, cos: int, replica: int = 0, *, service: str = SPROXYD_SERVICE_ID) -> str:
    """The key of COS replica ``replica`` (main chunk: replica 0, ending ``<cos>0``)."""
    cos = parse_cos(cos)
    if not 0 <= replica <= cos:
        raise ValueError(f"replica {replica} out of range for COS {cos}")
    return ring_key(md5_prefix, service=service, app_specific=COS_APP_SPECIFIC, klass=cos, index=replica)


def input_key_main_chunk(input_key: str, protection: ArcSchema | str | int) -> str:
    """The RING main chunk of an S3 input key under an ARC schema (``"8+4"``) or a COS level (int)."""
    prefix = input_key_md5_prefix(input_key)
    if isinstance(protection, int):
        return cos_chunk_key(prefix, protection)
    return arc_chunk_key(prefix, protection)


def digkey(key: str) -> str:
    """The first 26 chars of a RING key, the part S3 references match on."""
    return normalize_key(key)[:DIGKEY_LEN]


@dataclass(frozen=True, slots=True)
class RingKey:
    """A RING key split into its fields."""

    key: str

    @classmethod
    def parse(cls, text: str) -> RingKey:
        return cls(normalize_key(text))

    dispersion = property(lambda self: self.key[0:6])
    object_id = property(lambda self: self.key[6:22])
    volume = property(lambda self: self.key[22:30])
    service_id = property(lambda self: self.key[30:32])
    app_specific = property(lambda self: self.key[32:38])
    klass = property(lambda self: int(self.key[38], 16))
    digkey = property(lambda self: self.key[:DIGKEY_LEN])

    @property
    def index(self) -> int:
        """Replica (COS) or stripe (ARC, high nibble in char 37) index."""
        low = int(self.key[39], 16)
        return (int(self.key[37], 16) << 4 | low) if self.is_arc else low

    @property
    def is_arc(self) -> bool:
        return self.klass == ARC_CLASS

    @property
    def is_cos(self) -> bool:
        return self.klass <= MAX_COS

    @property
    def is_main_chunk(self) -> bool:
        """ARC stripe 0 (``…70``) or COS replica 0 (``…<cos>0``)."""
        if self.is_arc:
            return self.key[37] == "0" and self.key[39] == "0"
        return self.is_cos and self.key[39] == "0"

    @property
    def is_s3_candidate_service(self) -> bool:
        """Service 50 or 51 with volume-id chars 22-27 all zero (docs/domain.md section 6)."""
        return self.service_id in S3_SERVICE_IDS and self.key[22:28] == "000000"

    @property
    def protection(self) -> str:
        """``"arc"``, ``"cos"`` or ``"other"``."""
        return "arc" if self.is_arc else "cos" if self.is_cos else "other"
