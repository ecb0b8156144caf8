"""Error messages stay one readable line, however many values they could list."""

from __future__ import annotations

import pytest

from modelloop.errors import DataError, cap_list, shown_json


def test_cap_list_shows_ten_values_and_counts_the_rest():
    assert cap_list(range(3)) == "0, 1, 2"
    assert cap_list(range(500)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 490 more"
    assert cap_list(["a"] * 11, show=repr) == ", ".join(["'a'"] * 10) + " and 1 more"
    assert cap_list(iter(["x", "y"]), limit=1) == "x and 1 more"


def test_a_value_is_quoted_as_written_not_as_unicode_escapes():
    """A Chinese label in a message a person reads: the API's 422 for feedback with a label the model does
    not have read 'must be one of "\\u6b63\\u9762", "\\u8d1f\\u9762", got "\\u4e2d\\u6027"'."""
    from modelloop.families.heads import ClassificationHead

    assert shown_json("正面") == '"正面"' and shown_json(None) == "null" and shown_json("a\nb") == '"a\\nb"'
    with pytest.raises(DataError) as exc:
        ClassificationHead("binary", ["正面", "负面"]).check_label("中性", strict=True)
    assert str(exc.value) == 'label: must be one of "正面", "负面", got "中性"'
