"""Error messages stay one readable line, however many values they could list."""

from __future__ import annotations

from modelloop.errors import cap_list


def test_cap_list_shows_ten_values_and_counts_the_rest():
    assert cap_list(range(3)) == "0, 1, 2"
    assert cap_list(range(500)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 490 more"
    assert cap_list(["a"] * 11, show=repr) == ", ".join(["'a'"] * 10) + " and 1 more"
    assert cap_list(iter(["x", "y"]), limit=1) == "x and 1 more"
