"""Request validation against a model's registered input schema.

The request type is built from the schema at load time (a pydantic ``TypedDict`` per model version,
so a hot-swapped model with other columns gets its own), validated straight from the body bytes by
pydantic-core (~2 µs a record) and published in the OpenAPI spec. One validator per column kind
gives one clear error per field:

===========  ================================================================================
kind         accepted JSON values (``null`` always means a missing value)
===========  ================================================================================
numeric      numbers up to ±1.8e308 (``true``/``false`` and strings are refused)
boolean      ``true``/``false``, ``0``/``1``, or the strings true/false/yes/no/t/f/y/n (any case)
categorical  strings, or numbers/booleans (matched by their text, as at training time)
datetime     what training read (``data.dates``): ISO 8601 / RFC 3339 strings
             (``2024-05-01T12:30:00Z``; ``t``/``z`` in any case); else the column's one format
             when its training values had one (``03/05/2024 08:55``); else, for a column of mixed
             spellings, any date that carries its four-digit year (``5 Mar 2024``). Passed on in
             one canonical form (``2024-05-01T12:30:00+00:00``) so the ONNX and the native path,
             and the prediction log, read the same instant
===========  ================================================================================

JSON has no ``Infinity`` or ``NaN`` (RFC 8259), though the JSON readers take them: such a number
is refused wherever it stands (a feature of any kind, or a column kept only in the log), as a
model fed infinity answers nonsense; ``null`` is the way to send a missing value.

Every feature column is required (send ``null`` when unknown). Other columns of the table (the id,
text or time columns a tabular model does not use, the columns beside a text model's text) may be
sent and are kept in the prediction log; the target and any other name is an unknown field. Errors
name the field as ``records[i].column``.
"""

from __future__ import annotations

import decimal
import difflib
import math
import sys
from collections.abc import Sequence
from typing import Annotated, Any, cast

from pydantic import ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from ..data.dates import read_datetime
from ..data.schema import Schema
from ..errors import shown_json

__all__ = ["RequestValidator", "ValidationProblem", "describe_errors"]

BOOL_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
BOOL_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
_SCALARS = (str, int, float, bool)
FLOAT_MAX = sys.float_info.max
# the bound as the spec prints it (1.7976931348623157e+308, exactly 17976931348623157 * 10**292): an
# integer between it and the double's exact value (1797...858368) is beyond what clients are told
_INT_MAX = int(decimal.Decimal(repr(FLOAT_MAX)))


def _got(v: Any) -> str:
    text = shown_json(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(kind: str, what: str, v: Any) -> PydanticCustomError:
    return PydanticCustomError(f"{kind}_type", "must be {what}, got {got}", {"what": what, "got": _got(v)})


_NOT_FINITE = "a finite number (JSON has no Infinity or NaN; send null for a missing value)"


def _numeric(v: Any) -> Any:
    if v is None:
        return v
    if type(v) is float:
        if math.isfinite(v):
            return v
        raise _fail("numeric", _NOT_FINITE, v)
    if type(v) is int:
        if -_INT_MAX <= v <= _INT_MAX:         # JSON integers are unbounded; features are float64
            return v
        raise _fail("numeric", f"a number between -{FLOAT_MAX:.4g} and {FLOAT_MAX:.4g}", v)
    raise _fail("numeric", "a number (or null for a missing value)", v)


def _boolean(v: Any) -> Any:
    if v is None or type(v) is bool:
        return v
    if (type(v) is int or type(v) is float) and v in (0, 1):
        return bool(v)
    if type(v) is str:
        low = v.strip().lower()
        if low in BOOL_TRUE or low in BOOL_FALSE:
            return low in BOOL_TRUE
    raise _fail("boolean", "true, false, 0, 1, 'yes'/'no' (or null for a missing value)", v)


def _categorical(v: Any) -> Any:
    if v is None or type(v) in _SCALARS:
        if type(v) is float and not math.isfinite(v):
            raise _fail("categorical", f"a string or {_NOT_FINITE}", v)
        return v
    raise _fail("categorical", "a string (a category; or null for a missing value)", v)


def _datetime(fmt: str | None) -> Any:
    """The validator of a datetime column whose training values had format ``fmt`` (None: ISO 8601
    or mixed spellings): it accepts what training read, by the same reader."""
    if fmt is not None:
        what = f"an ISO 8601 date-time such as '2024-05-01T12:30:00Z' or a date in the format '{fmt}' (or null)"
    else:
        what = ("an ISO 8601 date-time such as '2024-05-01T12:30:00Z' or a date with its four-digit year "
                "such as '5 Mar 2024' (or null)")

    def validate(v: Any) -> Any:
        if v is None:
            return v
        if type(v) is str:
            t = read_datetime(v, fmt) if v.strip() else None
            if t is not None:
                return t.isoformat()
        raise _fail("datetime", what, v)

    return validate


def _passthrough(v: Any) -> Any:
    if v is None or type(v) in _SCALARS:
        if type(v) is float and not math.isfinite(v):
            raise _fail("scalar", f"a string, a boolean or {_NOT_FINITE}", v)
        return v
    raise _fail("scalar", "a string, number, boolean or null", v)


def _text(v: Any) -> Any:
    if type(v) is str and v.strip():
        return v
    raise _fail("text", "a non-empty string (the text to classify)", v)


# The published schemas accept exactly what the validators accept (schemathesis checks both ways in
# tests/serving/test_fuzz.py): the boolean words in any case with surrounding whitespace, text with
# at least one non-blank character.
_BOOL_WORDS = r"^\s*(?:[Tt](?:[Rr][Uu][Ee])?|[Yy](?:[Ee][Ss])?|[Ff](?:[Aa][Ll][Ss][Ee])?|[Nn][Oo]?|[01](?:\.0)?)\s*$"
_KINDS: dict[str, tuple[Any, dict[str, Any]]] = {
    "text": (_text, {"type": "string", "pattern": r"\S"}),
    "numeric": (_numeric, {"type": ["number", "null"], "minimum": -FLOAT_MAX, "maximum": FLOAT_MAX}),
    "boolean": (_boolean, {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]},
                                     {"type": "string", "pattern": _BOOL_WORDS}, {"type": "null"}]}),
    "categorical": (_categorical, {"type": ["string", "number", "boolean", "null"]}),
    "datetime": (_datetime(None), {"type": ["string", "null"], "format": "date-time"}),
}


def _field(validator: Any, json_schema: dict[str, Any], description: str) -> Any:
    return Annotated[Any, PlainValidator(validator),
                     WithJsonSchema({**json_schema, "description": description})]


class ValidationProblem(ValueError):
    """A request that does not match the schema; ``errors`` holds one entry per bad field."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


class RequestValidator:
    """Validates ``{"records": [{column: value, ...}, ...]}`` bodies for one input schema."""

    def __init__(self, schema: Schema, title: str = "Record", table: Sequence[str] = ()):
        """``table``: the columns of the training table, when the schema does not list them all (a
        text model's has its text and target only), so a client may send the table's rows."""
        self.schema = schema
        # model inputs: the tabular features, or the text column of a text model
        self.features = schema.features() or ([schema.text] if schema.text else [])
        feats = set(self.features)
        self.optional = [c for c in schema.columns if c not in feats and c != schema.target]
        self.optional += [c for c in table if c not in schema.columns and c != schema.target]
        self.allowed = [*self.features, *self.optional]
        fields: dict[str, Any] = {}
        for col in self.features:
            kind = schema.columns[col]
            fn, js = _KINDS[kind]
            description = f"{kind} feature (required; null = missing)"
            fmt = schema.datetime_format(col) if kind == "datetime" else None
            if fmt is not None:  # "03/05/2024 08:55" is no RFC 3339 date-time: no "format" keyword
                fn, js = _datetime(fmt), {"type": ["string", "null"]}
                description += f"; ISO 8601 or the format '{fmt}' of the training data"
            fields[col] = _field(fn, js, description)
        for col in self.optional:
            fields[col] = NotRequired[_field(_passthrough, {"type": ["string", "number", "boolean", "null"]},
                                             f"{schema.columns.get(col, 'training table')} column "
                                             "(optional, not a model input; kept in the log)")]
        record = TypedDict(title, fields)  # type: ignore[misc]
        record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        request = TypedDict("PredictRequest", {  # type: ignore[misc,name-match]  # noqa: UP013
            "records": Annotated[list[record], Field(min_length=1, description="one or many records")]})
        request.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._adapter = TypeAdapter(request)

    def validate_json(self, body: bytes) -> list[dict[str, Any]]:
        """The validated records of a request body; raises :class:`ValidationProblem`. A UTF-8 byte order
        mark is skipped (RFC 8259 lets a parser ignore it; Windows PowerShell and Notepad write one, and
        ``/v1/feedback`` accepted such a body while this refused it: 'expected value at line 1 column 1')."""
        if body[:3] == _UTF8_BOM:
            body = body[3:]
        try:
            return cast("list[dict[str, Any]]", self._adapter.validate_json(body)["records"])
        except ValidationError as exc:
            errors = exc.errors()
            if errors and errors[0]["type"] == "json_invalid" and (where := _not_utf8(body)):
                raise ValidationProblem([{"loc": [], "field": None, "type": "json_invalid",
                                          "msg": f"body: must be UTF-8 encoded JSON ({where})"}]) from None
            raise ValidationProblem(describe_errors(errors, self.allowed, self.schema.target,
                                                    text=self.schema.text)) from None

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the request body (``$defs`` refer to ``#/components/schemas``)."""
        return self._adapter.json_schema(ref_template="#/components/schemas/{model}")


_UTF8_BOM = b"\xef\xbb\xbf"


def _not_utf8(body: bytes) -> str | None:
    """Where a body stops being UTF-8 (a GBK body from a Chinese Windows client: pydantic says only
    'invalid unicode code point'), or None when it is UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte {exc.start} is not UTF-8; a GBK or Latin-1 body must be sent as UTF-8"
    return None


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


# pydantic's names of a union's members in an error's location (``user: str | int`` gives ``user.str``
# and ``user.int``), and how a message names each
_UNION_MEMBERS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}


def _merge_union_members(errors: Sequence[Any]) -> list[Any]:
    """One error for a value that matched no member of a union, at the union's own location: ``input
    should be a string or an integer``, not one clause a member (``body.user.str: ...; body.user.int: ...``)."""
    out: list[Any] = []
    for err in errors:
        loc = tuple(err["loc"])
        prev = out[-1] if out else None
        member = loc[-1] if loc and isinstance(loc[-1], str) and loc[-1] in _UNION_MEMBERS else None
        if member is None or not str(err["type"]).endswith("_type"):
            out.append(err)
        elif prev is not None and prev.get("_members") and tuple(prev["loc"]) == loc[:-1]:
            prev["_members"].append(member)
            names = [_UNION_MEMBERS[m] for m in prev["_members"]]
            prev["msg"] = f"Input should be {', '.join(names[:-1])} or {names[-1]}"
        else:
            out.append({**err, "loc": loc[:-1], "type": "union_type", "_members": [member],
                        "msg": f"Input should be {_UNION_MEMBERS[member]}"})
    return out


def describe_errors(errors: Sequence[Any], allowed: list[str], target: str | None = None,
                    limit: int = 20, *, text: str | None = None) -> list[dict[str, Any]]:
    """pydantic error dicts as ``{"loc", "field", "type", "msg"}`` whose ``msg`` names the field.
    ``text`` is a text model's input column, which takes no null."""
    out: list[dict[str, Any]] = []
    for err in _merge_union_members(errors)[:limit]:
        loc = tuple(err["loc"])
        path, kind = _path(loc), err["type"]
        field = loc[-1] if loc and isinstance(loc[-1], str) else None
        if kind == "missing":
            hint = "" if loc[:1] != ("records",) else \
                " (the text to classify, a non-empty string)" if field == text else " (send null for a missing value)"
            msg = f"{path}: required field is missing{hint}"
        elif kind == "extra_forbidden" and field == target and loc[:1] == ("records",):
            msg = (f"{path}: '{field}' is the target; do not send it "
                   f"(send the true label later with POST /v1/feedback)")
        elif kind == "extra_forbidden":
            close = difflib.get_close_matches(str(field), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            msg = f"{path}: unknown field{hint}; allowed: {', '.join(allowed)}"
        elif kind == "json_invalid":
            msg = f"body: not valid JSON ({err['msg'].removeprefix('Invalid JSON: ')})"
        elif kind.endswith("_type") and kind.split("_")[0] in (*_KINDS, "scalar"):
            msg = f"{path}: {err['msg']}"
        else:
            text = err["msg"]
            msg = f"{path}: {text[0].lower() + text[1:]}, got {_got(err.get('input'))}"
        out.append({"loc": list(loc), "field": field, "type": kind, "msg": msg})
    return out
