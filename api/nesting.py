"""How deeply a JSON document nests, found from its bytes before anything parses them.

Python's ``json`` recurses once per level and fails with ``RecursionError`` (a 500)
somewhere near a thousand levels, after doing all the work of getting there; pydantic
stops at its own limit. A request is refused before either, by a scan that runs at the
speed of ``bytes`` methods, never a Python loop per byte:

1. ``count`` the opening brackets: no more of them than the limit is the common case
   (a submission has a few), and then no nesting can be deeper.
2. Otherwise cut out every string (a regular expression that knows escaped quotes, and
   that always matches from a quote to the next unescaped one or the end, so it never
   backtracks), since brackets inside strings do not nest.
3. ``translate`` what is left to one signed byte per bracket (+1 opens, -1 closes,
   everything else deleted), and the deepest point is the largest running sum:
   ``max(accumulate(...))``, which runs in C (after a substring search for a plain
   run of too many opening brackets, which settles the usual attack at once).

The scan does not validate: malformed JSON that passes it is the parser's to refuse.
"""

from __future__ import annotations

import re
from itertools import accumulate

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = b"[]{}"
_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(_BRACKETS)))


def nested_deeper_than(document: bytes, limit: int) -> bool:
    """Whether the JSON ``document`` nests arrays and objects more than ``limit`` deep
    (``[]`` is one level, ``[{}]`` two), brackets inside strings not counting."""
    if document.count(b"[") + document.count(b"{") <= limit:
        return False
    bare = _STRING.sub(b"", document)
    steps = bare.translate(_STEPS, _NOT_BRACKETS)
    if steps.count(1) <= limit:
        return False
    if b"\x01" * (limit + 1) in steps:  # the usual attack, ``[[[[...``, found at once
        return True
    return max(accumulate(memoryview(steps).cast("b"))) > limit
