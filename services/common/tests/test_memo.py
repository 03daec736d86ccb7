"""common.memo.remember_short: short string arguments are remembered, anything else is not."""

from __future__ import annotations

from common.memo import remember_short


def test_only_calls_with_short_strings_are_remembered():
    calls = []

    def parse(*args):
        calls.append(args)
        return tuple(args)

    remembered = remember_short(parse, maxsize=2, longest=5)
    assert remembered("abc") == ("abc",) and remembered("abc") == ("abc",)
    assert calls == [("abc",)]  # the second call was remembered
    remembered("abcdef")
    remembered("abcdef")  # longer than 5: parsed each time
    remembered("a", 1)
    remembered("a", 1)  # not all strings: parsed each time
    assert calls[1:] == [("abcdef",), ("abcdef",), ("a", 1), ("a", 1)]
    remembered("x"), remembered("y"), remembered("abc")  # "abc" was pushed out (maxsize 2)
    assert calls[-1] == ("abc",) and remembered.cache_info().maxsize == 2
