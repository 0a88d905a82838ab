"""Idempotency-Key header parsing and scope derivation (pure).

Header parsing follows the idempotency specification §2.3 (summarised in ``docs/idempotency.md``), from the IETF draft
draft-ietf-httpapi-idempotency-key-header: the field value is a Structured Field *Item* whose bare item is an
sf-string (RFC 8941 §3.3.3); parameters are allowed and ignored. In **lenient** mode (the default, because
Stripe-style clients send the bare value) an unquoted value made only of visible ASCII without ``"``, ``,``, ``;``
or ``\\`` is accepted as it is. Every input either yields a valid key or raises :class:`InvalidKey` (HTTP 400);
nothing else escapes these functions.

Scoping follows §2.4: the storage identity of a record is an HMAC-SHA256 under a service secret of the length
prefixed fields ``"v1"``, tenant, principal, namespace and key, so raw keys and identities never reach the store
and a client cannot choose a storage id.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

__all__ = [
    "MIN_SECRET_BYTES",
    "InvalidKey",
    "ParsedKey",
    "check_secret",
    "derived_key",
    "is_uuid",
    "is_uuid4",
    "length_prefixed",
    "parse_key_header",
    "scope_id",
]

FORMAT_REFUSED = "Idempotency-Key does not have the required format"
"""The :class:`InvalidKey` reason for a key its validator refuses."""

MIN_SECRET_BYTES = 32
"""Shortest accepted HMAC secret (spec §2.4)."""

_OWS = " \t"
_LENIENT_FORBIDDEN = frozenset('",;\\')
_DIGITS = frozenset("0123456789")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LCALPHA = frozenset("abcdefghijklmnopqrstuvwxyz")
_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")
_KEY_CHARS = _LCALPHA | _DIGITS | frozenset("_-.*")
_BASE64 = _ALPHA | _DIGITS | frozenset("+/=")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_UUID4 = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}\Z")


class InvalidKey(ValueError):
    """The Idempotency-Key header is malformed, duplicated, too long or fails the key format (HTTP 400).

    Attributes:
        reason: a short, client-safe explanation (never echoes the key).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A validated idempotency key.

    Attributes:
        key: the decoded key, 1 to ``max_length`` printable ASCII characters.
        lenient: True when the value was an unquoted bare value accepted by lenient mode (counted in a metric).
    """

    key: str
    lenient: bool


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def is_uuid(key: str) -> bool:
    """True when ``key`` is a UUID in its canonical 8-4-4-4-12 hexadecimal form (any version)."""
    return _UUID.match(key) is not None


def is_uuid4(key: str) -> bool:
    """True when ``key`` is a canonical random (version 4, RFC 4122 variant) UUID: a high-entropy key."""
    return _UUID4.match(key) is not None


def parse_key_header(
    values: Sequence[bytes],
    *,
    lenient: bool = True,
    max_length: int = 255,
    min_length: int = 1,
    validator: Callable[[str], bool] | None = None,
) -> ParsedKey | None:
    """Parse and validate the ``Idempotency-Key`` header lines of one request (spec §2.3).

    Args:
        values: the raw values of every ``idempotency-key`` header line, in order (ASGI gives bytes).
        lenient: accept an unquoted bare value of visible ASCII without ``"``, ``,``, ``;`` or ``\\`` (default
            True); when False only an sf-string Item is accepted.
        max_length: longest decoded key accepted (default 255, Stripe's limit).
        min_length: shortest decoded key accepted (default 1); a crude entropy check such as Rocket Rides' 20.
        validator: an optional synchronous key format check, e.g. :func:`is_uuid4`; a false result or an exception
            is a 400, and so is an awaitable result (an async check cannot run here: ``IdempotencyMiddleware``
            awaits the ``key_validator`` of its configuration itself).

    Returns:
        ``None`` when the header is absent, else the validated key.

    Raises:
        InvalidKey: more than one header line, a value that is not a single sf-string Item (or lenient bare
            value), non-ASCII bytes, a key outside ``[min_length, max_length]`` or one the validator refuses.
    """
    if not values:
        return None
    if len(values) > 1:
        raise InvalidKey("more than one Idempotency-Key header")
    raw = values[0]
    try:
        text = raw.decode("ascii")
    except (UnicodeDecodeError, AttributeError):
        raise InvalidKey("Idempotency-Key must be ASCII") from None
    text = text.strip(_OWS)
    if text.startswith('"'):
        key = _parse_sf_string_item(text)
        was_lenient = False
    elif lenient and text and all("!" <= ch <= "~" and ch not in _LENIENT_FORBIDDEN for ch in text):
        key = text
        was_lenient = True
    else:
        raise InvalidKey("Idempotency-Key must be a quoted string (RFC 8941 sf-string)")
    if not min_length <= len(key) <= max_length:
        raise InvalidKey(f"Idempotency-Key must be {min_length} to {max_length} characters")
    if validator is not None:
        try:
            ok = cast("object", validator(key))
        except Exception:
            ok = False
        if inspect.isawaitable(ok):  # a coroutine is truthy: taking it for a pass would accept every key
            _discard(ok)
            ok = False
        if not ok:
            raise InvalidKey(FORMAT_REFUSED)
    return ParsedKey(key, was_lenient)


def _parse_sf_string_item(text: str) -> str:
    """Parse ``text`` (OWS already stripped) as an Item whose bare item is an sf-string; return the string."""
    value, pos = _parse_string(text, 0)
    pos = _parse_parameters(text, pos)
    if pos != len(text):
        raise InvalidKey("Idempotency-Key must be a single sf-string Item")
    return value


def _parse_string(text: str, pos: int) -> tuple[str, int]:
    # RFC 8941 §4.2.5; text[pos] == '"'.
    out: list[str] = []
    pos += 1
    n = len(text)
    while pos < n:
        ch = text[pos]
        pos += 1
        if ch == "\\":
            if pos >= n or text[pos] not in '"\\':
                raise InvalidKey("invalid escape in Idempotency-Key")
            out.append(text[pos])
            pos += 1
        elif ch == '"':
            return "".join(out), pos
        elif not " " <= ch <= "~":
            raise InvalidKey("invalid character in Idempotency-Key")
        else:
            out.append(ch)
    raise InvalidKey("unterminated string in Idempotency-Key")


def _parse_parameters(text: str, pos: int) -> int:
    # RFC 8941 §4.2.3.2: *( ";" *SP key [ "=" bare-item ] ); parameter values are parsed to be validated only.
    n = len(text)
    while pos < n and text[pos] == ";":
        pos += 1
        while pos < n and text[pos] == " ":
            pos += 1
        if pos >= n or not (text[pos] in _LCALPHA or text[pos] == "*"):
            raise InvalidKey("invalid parameter in Idempotency-Key")
        pos += 1
        while pos < n and text[pos] in _KEY_CHARS:
            pos += 1
        if pos < n and text[pos] == "=":
            pos = _skip_bare_item(text, pos + 1)
    return pos


def _skip_bare_item(text: str, pos: int) -> int:
    # RFC 8941 §4.2.3.1 (integer, decimal, string, token, byte sequence, boolean) and RFC 9651 dates.
    if pos >= len(text):
        raise InvalidKey("missing parameter value in Idempotency-Key")
    ch = text[pos]
    if ch == "-" or ch in _DIGITS:
        return _skip_number(text, pos)
    if ch == '"':
        return _parse_string(text, pos)[1]
    if ch in _ALPHA or ch == "*":
        pos += 1
        while pos < len(text) and (text[pos] in _TCHAR or text[pos] in ":/"):
            pos += 1
        return pos
    if ch == ":":
        end = text.find(":", pos + 1)
        if end < 0 or any(c not in _BASE64 for c in text[pos + 1 : end]):
            raise InvalidKey("invalid byte sequence parameter in Idempotency-Key")
        return end + 1
    if ch == "?":
        if text[pos + 1 : pos + 2] not in ("0", "1"):
            raise InvalidKey("invalid boolean parameter in Idempotency-Key")
        return pos + 2
    if ch == "@":
        end = _skip_number(text, pos + 1)
        if "." in text[pos + 1 : end]:
            raise InvalidKey("invalid date parameter in Idempotency-Key")
        return end
    raise InvalidKey("invalid parameter value in Idempotency-Key")


def _skip_number(text: str, pos: int) -> int:
    # RFC 8941 §4.2.4: at most 15 integer digits, or 12 + "." + 1..3 for a decimal.
    if pos < len(text) and text[pos] == "-":
        pos += 1
    digits_start = pos
    while pos < len(text) and text[pos] in _DIGITS:
        pos += 1
    int_digits = pos - digits_start
    if int_digits == 0:
        raise InvalidKey("invalid number parameter in Idempotency-Key")
    if pos < len(text) and text[pos] == ".":
        frac_start = pos + 1
        pos = frac_start
        while pos < len(text) and text[pos] in _DIGITS:
            pos += 1
        if int_digits > 12 or not 1 <= pos - frac_start <= 3:
            raise InvalidKey("invalid decimal parameter in Idempotency-Key")
    elif int_digits > 15:
        raise InvalidKey("invalid integer parameter in Idempotency-Key")
    return pos


def length_prefixed(*fields: bytes) -> bytes:
    """Concatenate ``fields``, each preceded by its length as 8 big-endian bytes (unambiguous framing)."""
    return b"".join(len(f).to_bytes(8, "big") + f for f in fields)


def check_secret(secret: bytes | str, parameter: str = "secret") -> bytes:
    """Normalise and validate an HMAC secret (``str`` is UTF-8 encoded).

    Raises:
        TypeError: not ``bytes`` or ``str``.
        ValueError: shorter than :data:`MIN_SECRET_BYTES` (32) bytes.
    """
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes | bytearray):
        raise TypeError(f"{parameter} must be bytes or str, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{parameter} must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
    return bytes(secret)


def scope_id(secret: bytes, *, tenant: str, principal: str, namespace: str, key: str) -> str:
    """The record id of a key in a scope: ``HMAC_SHA256(secret, "v1" ‖ tenant ‖ principal ‖ namespace ‖ key)``.

    Each field is length-prefixed (spec §2.4), so no two scopes share an id by concatenation. Returns 64 lower-case
    hexadecimal characters.
    """
    msg = length_prefixed(
        b"v1",
        tenant.encode("utf-8", "surrogatepass"),
        principal.encode("utf-8", "surrogatepass"),
        namespace.encode("utf-8", "surrogatepass"),
        key.encode("utf-8", "surrogatepass"),
    )
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def derived_key(secret: bytes, record_id: str, namespace: str) -> str:
    """A stable key for downstream idempotent calls made by the handler of ``record_id`` (spec §2.8 step 8).

    The same on every attempt of the record, so a re-drive cannot double-apply downstream (Rocket Rides derives its
    Stripe key the same way). Returns 64 lower-case hexadecimal characters, a valid bare Idempotency-Key.
    """
    msg = length_prefixed(b"derived-v1", record_id.encode("ascii"), namespace.encode("utf-8", "surrogatepass"))
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()
