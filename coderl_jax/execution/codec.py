"""Typed JSON for values crossing the sandbox boundary (never pickle).

JSON alone loses Python types that the tests' comparisons care about (a tuple is not a list in an
MBPP assert, `{1: 2}` has int keys), so values are encoded as JSON with small tags:

  None, bool, str, int (up to 4000 digits), finite float  -> themselves
  list                                                     -> JSON array
  everything else                                          -> {"<tag>": payload}
    T tuple · S set · F frozenset · D dict (list of pairs) · C complex · B bytes (hex)
    BA bytearray · I big int (hex) · X non-finite float · Q Fraction · M Decimal · R range
    N numpy array (dtype, shape, nested list) · bt builtin type/function by name
    H handle: an object that stayed in the sandbox (the judge sees a proxy)
    O opaque: an object that could not be encoded (compares unequal to everything)

`encode` runs inside the sandbox and must survive hostile objects: it reads values through the
base types' own C slots (`int.__index__`, `str.__str__`, `list.__iter__`...), so a subclass that
overrides `__eq__`, `__iter__` or `__str__` is encoded as the plain value it really holds.
`decode` runs in the trusted judge and builds only genuine builtin objects (and numpy arrays when
numpy is importable), so every comparison made afterwards uses Python's own semantics.
"""
from __future__ import annotations

import builtins
import math

MAX_DEPTH = 100
_INT_DIGITS = 4000  # below sys.int_info.default_max_str_digits (4300)
_BIG = 10 ** _INT_DIGITS


class CodecError(ValueError):
    """A payload that is not a valid encoding (or is too deep)."""


class Opaque:
    """Stands for an object the sandbox could not encode; equal only to itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<opaque {self.type_name}>"


def encode(value, handles=None, _depth: int = 0):
    """Encode `value` to JSON-able data; objects that are not plain data become handles
    (when `handles`, a callable object -> int, is given) or opaque markers."""
    if _depth > MAX_DEPTH:
        return _other(value, handles)
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -_BIG < value < _BIG else {"I": hex(value)}
    if t is float:
        return value if math.isfinite(value) else {"X": repr(value)}
    if t is list:
        return [encode(v, handles, _depth + 1) for v in list.__iter__(value)]
    if t is tuple:
        return {"T": [encode(v, handles, _depth + 1) for v in tuple.__iter__(value)]}
    if isinstance(value, bool):  # bool cannot be subclassed, kept for clarity
        return bool(value)
    if isinstance(value, int):
        return encode(int.__index__(value), handles, _depth)
    if isinstance(value, float):
        return encode(float.__float__(value), handles, _depth)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [encode(v, handles, _depth + 1) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"T": [encode(v, handles, _depth + 1) for v in tuple.__iter__(value)]}
    if isinstance(value, dict):
        return {"D": [[encode(k, handles, _depth + 1), encode(v, handles, _depth + 1)]
                      for k, v in dict.items(value)]}
    if isinstance(value, frozenset):
        return {"F": [encode(v, handles, _depth + 1) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"S": [encode(v, handles, _depth + 1) for v in set.__iter__(value)]}
    if isinstance(value, complex):
        c = complex.__complex__(value) if hasattr(complex, "__complex__") else complex(value)
        return {"C": [encode(c.real), encode(c.imag)]}
    if isinstance(value, bytes):
        return {"B": bytes.hex(value)}
    if isinstance(value, bytearray):
        return {"BA": bytearray.hex(value)}
    if t is range:
        return {"R": [value.start, value.stop, value.step]}
    mod = getattr(t, "__module__", "")
    if mod == "fractions" and t.__name__ == "Fraction":
        return {"Q": [encode(value.numerator), encode(value.denominator)]}
    if mod == "decimal" and t.__name__ == "Decimal":
        return {"M": str(value)}
    if mod == "numpy":
        return _numpy(value, handles, _depth)
    if (isinstance(value, type) or callable(value)) and getattr(builtins, getattr(
            value, "__name__", ""), None) is value:
        return {"bt": value.__name__}
    return _other(value, handles)


def _numpy(value, handles, depth):
    import numpy as np  # only reached when the value is a numpy object

    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufcUS":
            return {"N": [str(value.dtype), list(value.shape),
                          encode(value.tolist(), handles, depth + 1)]}
        return _other(value, handles)
    if isinstance(value, np.generic):
        return encode(value.item(), handles, depth + 1)
    return _other(value, handles)


def _other(value, handles):
    if handles is not None:
        return {"H": handles(value)}
    return {"O": type(value).__name__[:100]}


def decode(data, handle_factory=None, _depth: int = 0):
    """Rebuild a value from `encode`'s output using genuine builtin types only.

    Handles become `handle_factory(id)` (a proxy), or Opaque markers without a factory."""
    if _depth > MAX_DEPTH + 2:
        raise CodecError("value nested too deeply")
    t = type(data)
    if data is None or t in (bool, int, float, str):
        return data
    if t is list:
        return [decode(v, handle_factory, _depth + 1) for v in data]
    if t is not dict or len(data) != 1:
        raise CodecError(f"unexpected {t.__name__} in encoded value")
    (tag, p), = data.items()
    d = _depth + 1
    if tag == "T":
        return tuple(decode(v, handle_factory, d) for v in _arr(p))
    if tag == "S":
        return {decode(v, handle_factory, d) for v in _arr(p)}
    if tag == "F":
        return frozenset(decode(v, handle_factory, d) for v in _arr(p))
    if tag == "D":
        out = {}
        for pair in _arr(p):
            if type(pair) is not list or len(pair) != 2:
                raise CodecError("bad dict item")
            out[decode(pair[0], handle_factory, d)] = decode(pair[1], handle_factory, d)
        return out
    if tag == "I":
        return int(_str(p), 16)
    if tag == "X":
        if p not in ("nan", "inf", "-inf"):
            raise CodecError("bad float")
        return float(p)
    if tag == "C":
        re_, im = _arr(p)
        return complex(decode(re_, None, d), decode(im, None, d))
    if tag == "B":
        return bytes.fromhex(_str(p))
    if tag == "BA":
        return bytearray.fromhex(_str(p))
    if tag == "R":
        a, b, c = (_int(x) for x in _arr(p))
        return range(a, b, c)
    if tag == "Q":
        import fractions
        num, den = (decode(x, None, d) for x in _arr(p))
        return fractions.Fraction(_int(num), _int(den))
    if tag == "M":
        import decimal
        return decimal.Decimal(_str(p))
    if tag == "N":
        dtype, shape, values = _arr(p)
        values = decode(values, handle_factory, d)
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            return values
        return np.array(values, dtype=_str(dtype)).reshape([_int(s) for s in _arr(shape)])
    if tag == "bt":
        obj = getattr(builtins, _str(p), None)
        if obj is None or p.startswith("_") or p in _UNSAFE_BUILTINS:
            raise CodecError(f"unknown builtin {p!r}")
        return obj
    if tag == "H":
        return handle_factory(_int(p)) if handle_factory else Opaque("object")
    if tag == "O":
        return Opaque(_str(p))
    raise CodecError(f"unknown tag {tag!r}")


# Builtins a sandbox may name in a reply without the judge ever handing them out.
_UNSAFE_BUILTINS = {"eval", "exec", "compile", "open", "input", "breakpoint", "help", "exit",
                    "quit", "globals", "locals", "vars", "delattr", "setattr", "getattr"}


def _arr(p):
    if type(p) is not list:
        raise CodecError("expected a list")
    return p


def _str(p):
    if type(p) is not str:
        raise CodecError("expected a string")
    return p


def _int(p):
    if type(p) is not int:
        raise CodecError("expected an int")
    return p
