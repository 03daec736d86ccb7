"""Remembering the results of pure parses of short strings.

The same header values and addresses come back from message to message (a sender's From, a school's
Content-Type), and the stdlib parses them in Python, character by character. `remember_short(fn)` keeps
the last results of `fn` for arguments that are short strings, and calls `fn` afresh for anything else
(a long value, another type), so that a hostile message cannot fill the cache with large values. `fn`
must be pure and its results immutable: a remembered result is shared by every caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


def remember_short(fn: Callable[..., R], maxsize: int = 4096, longest: int = 1024) -> Callable[..., R]:
    """`fn`, its results remembered (least recently used first out, `maxsize` of them) when every
    argument is a string of at most `longest` characters."""
    remembered = functools.lru_cache(maxsize=maxsize)(fn)

    @functools.wraps(fn)
    def call(*args):
        if all(isinstance(arg, str) and len(arg) <= longest for arg in args):
            return remembered(*args)
        return fn(*args)

    call.cache_info = remembered.cache_info  # type: ignore[attr-defined]
    return call
