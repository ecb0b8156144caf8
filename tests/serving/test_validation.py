"""Request validation against the input schema: one clear message per bad field."""

from __future__ import annotations

import json

import pytest

from modelloop.data.schema import Schema
from modelloop.serving.validation import RequestValidator, ValidationProblem

SCHEMA = Schema(columns={"tid": "identifier", "amount": "numeric", "country": "categorical",
                         "online": "boolean", "signup": "datetime", "note": "text", "y": "numeric"},
                target="y", id="tid", text="note")
GOOD = {"amount": 1.5, "country": "FR", "online": True, "signup": "2024-05-01T12:30:00Z"}


def problems(records) -> list[dict]:
    with pytest.raises(ValidationProblem) as info:
        RequestValidator(SCHEMA).validate_json(json.dumps({"records": records}).encode())
    return info.value.errors


def test_valid_records_pass_and_null_means_missing() -> None:
    v = RequestValidator(SCHEMA)
    nulls = dict.fromkeys(GOOD)
    out = v.validate_json(json.dumps({"records": [GOOD, {**nulls, "tid": "x", "note": "hi"}]}).encode())
    assert out[0] == {**GOOD, "signup": "2024-05-01T12:30:00+00:00"}
    assert out[1]["amount"] is None and out[1]["tid"] == "x"
    assert v.features == ["amount", "country", "online", "signup"]


@pytest.mark.parametrize(("value", "stored"), [
    ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00"),
    ("2024-05-01t12:30:00z", "2024-05-01T12:30:00+00:00"),        # RFC 3339 allows both cases
    (" 2024-05-01 14:30:00+02:00 ", "2024-05-01T14:30:00+02:00"),
    ("2024-05-01", "2024-05-01T00:00:00"),
])
def test_datetimes_pass_on_in_one_canonical_form(value, stored) -> None:
    out = RequestValidator(SCHEMA).validate_json(json.dumps({"records": [{**GOOD, "signup": value}]}).encode())
    assert out[0]["signup"] == stored
    import pandas as pd  # the native path parses what the validator passes on

    assert pd.to_datetime(pd.Series([stored]), utc=True).notna().all()


@pytest.mark.parametrize(("value", "stored"), [(1, True), (0, False), ("Yes", True), (" no ", False)])
def test_boolean_accepts_the_training_spellings(value, stored) -> None:
    out = RequestValidator(SCHEMA).validate_json(json.dumps({"records": [{**GOOD, "online": value}]}).encode())
    assert out[0]["online"] is stored


def test_missing_field_is_named() -> None:
    [err] = problems([{k: v for k, v in GOOD.items() if k != "amount"}])
    assert err["field"] == "amount" and err["msg"].startswith("records[0].amount: required")
    assert "null" in err["msg"]


def test_unknown_field_is_named_with_what_is_allowed() -> None:
    [err] = problems([{**GOOD, "amout": 3}])
    assert err["field"] == "amout"
    assert "unknown field (did you mean 'amount'?)" in err["msg"]
    assert "allowed: amount, country, online, signup, tid, note" in err["msg"]


def test_target_is_refused_with_a_pointer_to_feedback() -> None:
    [err] = problems([{**GOOD, "y": 1}])
    assert "is the target" in err["msg"] and "/v1/feedback" in err["msg"]


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("amount", "12.5", "must be a number"),
    ("amount", True, "must be a number"),
    ("country", {"a": 1}, "must be a string"),
    ("online", "maybe", "true, false"),
    ("signup", "yesterday", "ISO 8601"),
    ("signup", 1714566600, "ISO 8601"),
])
def test_wrong_type_names_field_value_and_what_is_allowed(field, value, expect) -> None:
    [err] = problems([{**GOOD, field: value}])
    assert err["msg"].startswith(f"records[0].{field}: ")
    assert expect in err["msg"] and json.dumps(value)[:10] in err["msg"]


def test_every_bad_field_is_reported_at_once_with_its_record_index() -> None:
    errs = problems([GOOD, {**GOOD, "amount": "x", "country": [1]}])
    assert [e["msg"].split(":")[0] for e in errs] == ["records[1].amount", "records[1].country"]


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"records": []}', b'{"rows": []}'])
def test_malformed_bodies(body) -> None:
    with pytest.raises(ValidationProblem) as info:
        RequestValidator(SCHEMA).validate_json(body)
    assert info.value.errors and all(e["msg"] for e in info.value.errors)


def test_json_schema_documents_columns() -> None:
    js = RequestValidator(SCHEMA, title="Rec").json_schema()
    rec = js["$defs"]["Rec"]
    assert rec["required"] == ["amount", "country", "online", "signup"]
    assert rec["additionalProperties"] is False
    assert rec["properties"]["signup"]["format"] == "date-time"
    assert "y" not in rec["properties"]


def test_text_model_requests_take_the_text_column():
    from modelloop.data.schema import Schema
    from modelloop.serving.validation import RequestValidator, ValidationProblem

    v = RequestValidator(Schema(columns={"message": "text", "intent": "categorical"}, target="intent",
                                text="message"))
    assert v.features == ["message"]
    assert v.validate_json(b'{"records": [{"message": "my card was charged twice"}]}') == [
        {"message": "my card was charged twice"}]
    for body, field in ((b'{"records": [{"message": "  "}]}', "message"), (b'{"records": [{}]}', "message"),
                        (b'{"records": [{"message": "hi", "msg": "x"}]}', "msg")):
        with pytest.raises(ValidationProblem) as exc:
            v.validate_json(body)
        assert exc.value.errors[0]["field"] == field


# ---- datetimes: what training read --------------------------------------------------------------
@pytest.mark.parametrize(("value", "stored"), [
    ("03/05/2024 08:55", "2024-03-05T08:55:00"),      # month-first, as training read it (dateutil)
    ("5 Mar 2024", "2024-03-05T00:00:00"),
    ("Tue, 05 Mar 2024 08:55:00 +0000", "2024-03-05T08:55:00+00:00"),
])
def test_a_datetime_column_takes_every_spelling_training_read(value, stored) -> None:
    out = RequestValidator(SCHEMA).validate_json(json.dumps({"records": [{**GOOD, "signup": value}]}).encode())
    assert out[0]["signup"] == stored


@pytest.mark.parametrize("value", ["m01", "may", "Monday", "12:30", ""])
def test_a_value_without_a_date_is_refused(value) -> None:
    [err] = problems([{**GOOD, "signup": value}])
    assert err["field"] == "signup" and "four-digit year" in err["msg"]


def test_a_column_with_one_format_reads_requests_in_it() -> None:
    """Training read ``signup`` as ``%d/%m/%Y`` (its values had a day past 12): the server reads
    ``03/05/2024`` as 3 May too, still takes ISO 8601, and refuses another spelling naming both."""
    schema = Schema(columns=SCHEMA.columns, target="y", id="tid", text="note",
                    datetime_formats={"signup": "%d/%m/%Y"})
    v = RequestValidator(schema, title="Rec")
    body = {"records": [{**GOOD, "signup": "03/05/2024"}, {**GOOD, "signup": "2024-05-03t10:00:00z"}]}
    out = v.validate_json(json.dumps(body).encode())
    assert [r["signup"] for r in out] == ["2024-05-03T00:00:00", "2024-05-03T10:00:00+00:00"]
    with pytest.raises(ValidationProblem) as info:
        v.validate_json(json.dumps({"records": [{**GOOD, "signup": "May 3, 2024"}]}).encode())
    [err] = info.value.errors
    assert err["msg"].startswith("records[0].signup: ") and "'%d/%m/%Y'" in err["msg"] and "ISO 8601" in err["msg"]
    prop = v.json_schema()["$defs"]["Rec"]["properties"]["signup"]   # "03/05/2024" is no RFC 3339 date-time
    assert "format" not in prop and "%d/%m/%Y" in prop["description"]


# ---- JSON has no Infinity or NaN ------------------------------------------------------------------
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("field", ["amount", "country", "tid"])   # numeric, categorical, kept in the log
def test_infinity_and_nan_are_refused_naming_the_field(number, field) -> None:
    """pydantic's JSON reader takes them; a model fed infinity answers nonsense. In a batch, the
    record at fault is named."""
    bad = json.dumps({**GOOD, field: "__X__"}).replace('"__X__"', number)
    body = f'{{"records": [{json.dumps(GOOD)}, {json.dumps(GOOD)}, {bad}]}}'.encode()
    with pytest.raises(ValidationProblem) as info:
        RequestValidator(SCHEMA).validate_json(body)
    [err] = info.value.errors
    assert err["field"] == field and err["msg"].startswith(f"records[2].{field}: must be ")
    assert "finite number" in err["msg"] and err["msg"].endswith(f"got {number}")


def test_a_text_model_takes_the_other_columns_of_its_table() -> None:
    """A text model's schema names its text and target only; the rows of its table carry more (the
    examples' ``lang``): kept in the log, while the target is still refused."""
    schema = Schema(columns={"message": "text", "intent": "categorical"}, target="intent", text="message")
    v = RequestValidator(schema, table=["message", "intent", "lang"])
    assert v.features == ["message"] and v.optional == ["lang"]
    assert v.validate_json(b'{"records": [{"message": "hi", "lang": "en"}]}') == [{"message": "hi", "lang": "en"}]
    with pytest.raises(ValidationProblem) as info:
        v.validate_json(b'{"records": [{"message": "hi", "intent": "refund"}]}')
    assert "is the target" in info.value.errors[0]["msg"]


@pytest.mark.parametrize("value", ["0001-01-01T02:00:01+02:01", "9999-12-31T23:00:00-02:00"])
def test_an_aware_time_outside_the_years_in_utc_is_refused_naming_the_field(value) -> None:
    """Year 1 with a positive offset is year 0 in UTC (and 9999 with a negative one year 10000): the model
    reads times in UTC, and the server answered 500 (OverflowError), found by tests/serving/test_fuzz.py."""
    [err] = problems([{**GOOD, "signup": value}])
    assert err["field"] == "signup" and "ISO 8601 date-time" in err["msg"]
