"""Request fingerprints (pure), spec §2.5, and the RFC 8785 JSON canonicalisation they can use.

``fingerprint = SHA-256`` over length-prefixed fields: the literal ``"idem-fp-v1"``, the upper-case method, the raw
path as received (percent-encoding preserved), the raw query bytes, the values of an allow-list of headers
(default ``content-type`` with the media type lower-cased and its parameters kept, and ``content-encoding``), and
the request body bytes. Options: hash the RFC 8785 (JCS) form of a JSON body instead of its bytes
(``json_canonical``), hash only selected JSON fields (``fields``: JSON pointers or a callable), ignore the query
(``exclude_query``) or sort its parameters (``query_canonical``).

The fingerprint is computed once, before the handler runs, from the buffered body, and stored with
:data:`FP_VERSION`. A body that cannot be canonicalised (not JSON, duplicate names, NaN, lone surrogates, a failing
``fields`` callable, a number no IEEE 754 double holds exactly) is hashed as raw bytes under a distinct tag, so the two
forms never collide.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stalwart._policy import is_async_callable

from ._keys import length_prefixed

__all__ = [
    "FP_VERSION",
    "FORBIDDEN_FINGERPRINT_HEADERS",
    "FingerprintSpec",
    "canonical_json",
    "compute_fingerprint",
    "header_values",
]

FP_VERSION = 1
"""Version of the fingerprint definition; stored on each record and compared on every hit."""

FORBIDDEN_FINGERPRINT_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "date",
        "idempotency-key",
        "content-length",
        "host",
        "traceparent",
        "tracestate",
        "x-request-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-amzn-trace-id",
    }
)
"""Headers that never belong to a fingerprint (credentials, per-attempt values, tracing)."""

_MISSING = object()


def header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The values of every request header line called ``name`` (given in lower case), in order.

    Names are compared without regard to case: the ASGI spec asks servers to lower-case header names but does not
    require it, and some (and test transports) pass them as the client wrote them.
    """
    size = len(name)
    return [v for k, v in headers if len(k) == size and k.lower() == name]


@dataclass(frozen=True, slots=True)
class FingerprintSpec:
    """What a route's fingerprint covers (spec §2.5).

    Args:
        headers: lower-case names of request headers whose values are hashed (default ``content-type`` and
            ``content-encoding``); credentials, ``date``, tracing headers, ``idempotency-key``, ``content-length``
            and ``host`` are refused.
        json_canonical: hash the RFC 8785 canonical form of a JSON body (``application/json`` or ``+json``)
            instead of its bytes, so whitespace, member order and number spelling do not matter (default False).
            The request's ``content-type`` says whether the body is JSON even when ``headers`` leaves it out (it
            is then not hashed itself); the same holds for ``fields``.
        fields: hash only these parts of a JSON body: a tuple of RFC 6901 JSON pointers, or a synchronous callable
            ``(parsed_json) -> value`` (like Powertools' ``payload_validation_jmespath``); default None (whole body).
            The fingerprint is computed synchronously: an async callable is refused, and an awaitable returned by
            one that looked sync counts as a failing callable (the raw body is hashed).
        exclude_query: ignore the query string (default False).
        query_canonical: sort the query's ``&``-separated parameters before hashing (default False).

    Raises:
        ValueError: a forbidden or upper-case header name, a pointer not starting with ``/``, an async ``fields``
            callable, or both query options.
    """

    headers: tuple[str, ...] = ("content-type", "content-encoding")
    json_canonical: bool = False
    fields: tuple[str, ...] | Callable[[Any], Any] | None = None
    exclude_query: bool = False
    query_canonical: bool = False
    _header_bytes: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in self.headers:
            if name != name.lower() or not name:
                raise ValueError(f"headers must be lower-case header names, got {name!r}")
            if name in FORBIDDEN_FINGERPRINT_HEADERS:
                raise ValueError(f"headers must not include {name!r} (never part of a fingerprint)")
        if isinstance(self.fields, tuple):
            for pointer in self.fields:
                if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
                    raise ValueError(f"fields must be JSON pointers such as '/amount', got {pointer!r}")
        elif self.fields is not None and not callable(self.fields):
            raise ValueError("fields must be a tuple of JSON pointers or a callable")
        elif self.fields is not None and is_async_callable(self.fields):
            raise ValueError("fields must be a synchronous callable (the fingerprint cannot await it)")
        if self.exclude_query and self.query_canonical:
            raise ValueError("exclude_query and query_canonical are mutually exclusive")
        object.__setattr__(self, "_header_bytes", tuple(h.encode("latin-1") for h in self.headers))


def compute_fingerprint(
    spec: FingerprintSpec,
    *,
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> bytes:
    """The 32-byte SHA-256 fingerprint of a request (spec §2.5, version :data:`FP_VERSION`).

    Args:
        spec: what to include.
        method: the HTTP method (upper-cased here).
        raw_path: the path exactly as received (ASGI ``raw_path``; percent-encoding preserved).
        query: the raw query string bytes.
        headers: the request's raw ``(name, value)`` pairs (names matched in any case).
        body: the request body bytes as received.
    """
    parts: list[bytes] = [b"idem-fp-v1", method.upper().encode("ascii", "replace"), raw_path]
    if spec.exclude_query:
        parts.append(b"")
    elif spec.query_canonical:
        parts.append(b"&".join(sorted(p for p in query.split(b"&") if p)))
    else:
        parts.append(query)
    for name in spec._header_bytes:
        values = header_values(headers, name)
        if name == b"content-type":
            values = [_normalise_content_type(v) for v in values]
        parts.append(name)
        parts.append(length_prefixed(*values))
    parts.append(_body_part(spec, headers, body))
    return hashlib.sha256(length_prefixed(*parts)).digest()


def _normalise_content_type(value: bytes) -> bytes:
    media, sep, params = value.partition(b";")
    return media.strip().lower() + sep + params


def _is_json(content_type: bytes) -> bool:
    media = content_type.partition(b";")[0]
    return media == b"application/json" or media.endswith(b"+json")


def _body_part(spec: FingerprintSpec, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
    if not (spec.json_canonical or spec.fields is not None):
        return b"raw:" + body
    # Whether the body is JSON is read from the request itself, whatever the header allow-list hashes: a spec that
    # leaves content-type out of the hash still canonicalises (or selects from) a JSON body.
    content_types = header_values(headers, b"content-type")
    if not content_types or not _is_json(_normalise_content_type(content_types[0])):
        return b"raw:" + body
    try:
        document = _loads_strict(body)
        if spec.fields is None:
            selected: Any = document
        elif callable(spec.fields):
            selected = spec.fields(document)
            if inspect.isawaitable(selected):  # cannot be awaited here: a failing callable, without a leaked coroutine
                close = getattr(selected, "close", None)
                if callable(close):
                    close()
                raise TypeError("the fields callable returned an awaitable")
        else:
            selected = [_resolve_pointer(document, p) for p in spec.fields]
        return b"jcs:" + canonical_json(selected)
    except Exception:
        return b"raw:" + body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member names")
    return result


_EXACT_INT = 2**53


def _check_lossless(text: str, value: float) -> None:
    # JCS spells every number as its IEEE 754 double, so two numbers sharing a double would share a canonical form
    # (2**53 and 2**53 + 1; 0.3 and 0.30000000000000001) although the handler, or a Decimal field, tells them apart.
    # Only the number that the double's own shortest spelling denotes is canonicalised; any other is not I-JSON
    # (RFC 7493 §2.2) and the body is hashed as raw bytes.
    if not math.isfinite(value) or Decimal(text) != Decimal(repr(value)):
        raise ValueError("number not exactly representable as an IEEE 754 double (not I-JSON)")


def _parse_int(text: str) -> int:
    value = int(text)
    if not -_EXACT_INT <= value <= _EXACT_INT:
        try:
            _check_lossless(text, float(value))
        except OverflowError:
            raise ValueError("integer too large for an IEEE 754 double") from None
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    _check_lossless(text, value)
    return value


def _loads_strict(body: bytes) -> Any:
    return json.loads(
        body,
        parse_constant=_reject_constant,
        parse_int=_parse_int,
        parse_float=_parse_float,
        object_pairs_hook=_no_duplicates,
    )


def _resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901; a pointer that does not resolve gives a marker distinct from every JSON value."""
    if pointer == "":
        return document
    node = document
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and (part == "0" or not part.startswith("0")):
            index = int(part)
            if index >= len(node):
                return {"$missing": pointer, "$marker": "\x00stalwart"}
            node = node[index]
        else:
            return {"$missing": pointer, "$marker": "\x00stalwart"}
    return node


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) serialisation of a JSON value, UTF-8 encoded.

    Members sorted by their UTF-16 code units, no insignificant whitespace, strings escaped minimally, numbers in
    the ECMAScript ``Number.prototype.toString`` form of their IEEE 754 double value (so ``1``, ``1.0`` and
    ``1e0`` are all ``1``).

    Raises:
        ValueError: a value JSON cannot represent (NaN, infinity, a non-string member name, an unknown type).
        UnicodeEncodeError: a lone surrogate in a string.
    """
    out: list[str] = []
    _emit(value, out)
    return "".join(out).encode("utf-8")


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int | float):
        out.append(_es_number(float(value)))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("JSON member names must be strings")
        out.append("{")
        for i, k in enumerate(sorted(value, key=lambda s: s.encode("utf-16-be", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _emit(value[k], out)
        out.append("}")
    else:
        raise ValueError(f"not a JSON value: {type(value).__name__}")


def _es_number(x: float) -> str:
    """ECMAScript Number::toString for a finite double (RFC 8785 §3.2.2.3)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinities are not JSON")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _es_number(-x)
    # Shortest round-trip digits (repr) as digits d1..dk and exponent n with value 0.d1..dk * 10**n.
    _sign, digits_t, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + len(digits_t)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    exp = ("+" if e >= 0 else "-") + str(abs(e))
    if k == 1:
        return digits + "e" + exp
    return digits[0] + "." + digits[1:] + "e" + exp
