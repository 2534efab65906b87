"""Hypothesis strategies for leakhunt documents (shared by the report tests)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from hypothesis import strategies as st

from leakhunt.model import Investigation, ScanResult, TraceResult

_text = st.text(max_size=12)
# sizes far beyond any real process, yet derived sums (anon = rss - shared + swap, totals over a
# few stacks) stay inside the signed 64 bits a report may hold (2**62 + 2**62 did not)
_int = st.integers(min_value=-(2**60), max_value=2**60)
_float = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _strategy(tp: Any, field_name: str = "") -> st.SearchStrategy[Any]:
    """A strategy for any type used in leakhunt.model, filling every dataclass field (defaults too),
    so a field added to the model but forgotten by jsonio fails the round trip."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f.name: _strategy(hints[f.name], f.name) for f in dataclasses.fields(tp)})
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (Union, types.UnionType):
        return st.one_of([_strategy(a, field_name) for a in get_args(tp)])
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_strategy(args[0], field_name), max_size=3).map(tuple)
        if "address" in field_name and args == (int, int):
            # (address, size): an unsigned 64-bit address, a size that fits a signed 64-bit integer
            return st.tuples(st.integers(0, 2**64 - 1), _int)
        return st.tuples(*[_strategy(a, field_name) for a in args])
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        # addresses are unsigned 64-bit in the tools' output
        return st.integers(0, 2**64 - 1) if "address" in field_name else _int
    if tp is float:
        return _float
    if tp is str:
        return _text
    raise TypeError(f"no strategy for {tp!r}")


documents = st.one_of(_strategy(Investigation), _strategy(TraceResult), _strategy(ScanResult))
