"""One way to turn a JSON payload into a model, shared by the HTTP edge and the queue consumers,
so a body the edge answered 2xx can never be poison in the queue. Failures are
``PayloadRejected`` (poison) naming the encoding, the nesting or the failing field paths.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from enum import StrEnum
from itertools import accumulate
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.platform.errors import PoisonMessageError

M = TypeVar("M", bound=BaseModel)


class Model(BaseModel):
    """The base of every chalicelib model: its validator is built on first use, not at import,
    so a function's cold start pays only for the models its first event touches."""

    model_config = ConfigDict(defer_build=True)


class OpenEnum(StrEnum):
    """A ``str`` enum of values another party defines: its values are taken in upper or lower
    case ("pass" is PASS), and any other value becomes its ``UNKNOWN`` member, never an error."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            members = {member.value: member for member in cls}
            for spelling in (value.upper(), value.lower()):
                if spelling in members:
                    return members[spelling]
        return cls["UNKNOWN"]


# Deeper than any payload we accept (Postmark's are 3 levels); checked before parsing, without
# recursion, so 10,000 levels cost a scan, not a RecursionError.
MAX_DEPTH = 64
_UTF8_BOM = "\ufeff"
_STRING = re.compile(r'"[^"]*"')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_CHUNK = 65_536
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_REASON = 480
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class PayloadRejected(PoisonMessageError):
    """A payload its model cannot accept; ``code`` is the HTTP error code, ``fields`` the paths."""

    def __init__(self, reason: str, *, code: str, fields: list[str] | None = None) -> None:
        super().__init__(reason[:_MAX_REASON])
        self.code = code
        self.fields = fields or []


def decode_text(payload: bytes | str, *, what: str) -> str:
    """``payload`` as text: UTF-8 only; a leading UTF-8 BOM is dropped (one rule for the edge
    and the queue); UTF-16/32, invalid UTF-8 and lone surrogates are rejected."""
    if isinstance(payload, bytes | bytearray):
        encoding = json.detect_encoding(bytes(payload[:4]))
        if encoding not in {"utf-8", "utf-8-sig"}:
            name = codecs.lookup(encoding).name.upper()
            raise PayloadRejected(
                f"{what}: body looks like {name}; send UTF-8", code="invalid_encoding"
            )
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as err:
            raise PayloadRejected(
                f"{what}: body is not valid UTF-8 (byte {err.start})", code="invalid_encoding"
            ) from None
    else:
        text = payload
        if _SURROGATE.search(text):
            raise PayloadRejected(
                f"{what}: body contains a lone UTF-16 surrogate", code="invalid_encoding"
            )
    return text[1:] if text.startswith(_UTF8_BOM) else text


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (strings skipped), without recursion.

    Escaped backslashes, then escaped quotes, are dropped first, so every remaining quote
    opens or closes a string and strings come out with one simple regex; all in C loops.
    """
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    structure = _NOT_BRACKET.sub("", _STRING.sub("", unescaped))
    depth = deepest = 0
    for start in range(0, len(structure), _CHUNK):  # chunks: 10,000 "[" stop at the first
        running = list(accumulate(map(_STEP.__getitem__, structure[start : start + _CHUNK])))
        deepest = max(deepest, depth + max(running))
        depth += running[-1]
        if deepest > MAX_DEPTH:
            break
    return deepest


def json_object(
    message: str, *, what: str, error: type[PoisonMessageError] = PoisonMessageError
) -> dict[str, Any]:
    """``message`` as a JSON object, or ``error`` saying that it is not JSON or not an object."""
    try:
        decoded = json.loads(message)
    except ValueError as err:
        raise error(f"{what} is not JSON") from err
    if not isinstance(decoded, dict):
        raise error(f"{what} is not a JSON object")
    return decoded


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(payload: bytes | str, *, what: str) -> Any:
    """``payload`` decoded as strict JSON (no NaN or Infinity, no lone surrogates)."""
    text = decode_text(payload, what=what)
    if nesting_depth(text) > MAX_DEPTH:
        raise PayloadRejected(
            f"{what}: nested too deeply (more than {MAX_DEPTH} levels)", code="nested_too_deeply"
        )
    try:
        decoded = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as err:
        raise PayloadRejected(
            f"{what}: body is not valid JSON at line {err.lineno} column {err.colno}",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError):  # NaN, Infinity, an integer of 4,300+ digits
        raise PayloadRejected(f"{what}: body is not valid JSON", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(text):
        path = next(_surrogate_paths(decoded), None)
        if path is not None:
            raise PayloadRejected(
                f"{what}: {path}: contains a lone UTF-16 surrogate",
                code="invalid_encoding",
                fields=[path],
            )
    return decoded


def _surrogate_paths(value: Any) -> Iterator[str]:
    """Paths (``ToFull.0.Email``) of strings or keys holding a lone surrogate; iterative."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                yield path or "(body)"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{field_path((key,))}" if path else field_path((key,))
                if _SURROGATE.search(key):
                    yield name
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), c) for i, c in enumerate(item))


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted path; ``(body)`` for the payload as a whole."""
    path = ".".join(str(part) for part in loc) or "(body)"
    # Keys are the caller's: escape controls and surrogates, which would break a log line,
    # an SQS attribute or a header.
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", path)[:200]


def validate(model: type[M], decoded: Any, *, what: str) -> M:
    """``decoded`` as ``model``; the rejection names every failing path and why."""
    try:
        return model.model_validate(decoded)
    except ValidationError as err:
        problems = [(field_path(e["loc"]), e["msg"]) for e in err.errors()]
        fields = sorted({path for path, _ in problems})
        detail = "; ".join(f"{path}: {msg}" for path, msg in problems)
        raise PayloadRejected(f"{what}: {detail}", code="invalid_payload", fields=fields) from None


def parse(model: type[M], payload: bytes | str, *, what: str) -> M:
    """Decode and validate ``payload`` as ``model`` (see ``decode_json`` and ``validate``)."""
    return validate(model, decode_json(payload, what=what), what=what)
