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
`decode` runs in the trusted judge and builds only genuine builtin objects (and numpy arrays),
so every comparison made afterwards uses Python's own semantics.

`decode` is bounded, because the reply is written by the program (which can forge any frame) and
the judge must neither stall nor run out of memory on it. A Python-level timer in the judge can
stop Python loops but not one long C call (`set(...)`, `int(...)`, `np.array(...)`), so every
value is kept small enough that each C-level operation on it, in decode or in test code, is short:
  * at most MAX_ELEMENTS values and containers in all (a range counts its length), nesting at
    most MAX_DEPTH;
  * ints at most MAX_INT_BITS bits (plain JSON ints are under 4300 digits anyway), so products,
    divisions and gcds (a Fraction's reduction) stay in the microseconds; Fractions are two such
    ints; a Decimal at most MAX_DECIMAL_CHARS characters with an exponent within
    MAX_DECIMAL_EXPONENT (so `int(d)` or `d.as_integer_ratio()` cannot build a giant int);
    complex parts are floats;
  * numpy arrays: a dtype of kind b/i/u/f/c/U/S (no objects, records or subarrays) with a
    bounded item size, a shape of at most MAX_DIMS dimensions whose product is the number of
    values sent, and at most MAX_ARRAY_BYTES of data;
  * hash flooding: numbers' hashes are public arithmetic (k * (2**61 - 1) + 7 all hash to 7),
    so no more than MAX_SHARED_HASH distinct hashable values (numbers, tuples, frozensets,
    ranges) of a reply may share a hash value; sets and dicts are checked before they are built,
    lists too because test code may put their items in a set (see `check_hash_collisions`).
Strings and bytes are bounded by the reply's frame size; their hashes are keyed, not floodable.
"""
from __future__ import annotations

import builtins
import collections
import math

MAX_DEPTH = 100
_INT_DIGITS = 4000  # below sys.int_info.default_max_str_digits (4300)
_BIG = 10 ** _INT_DIGITS

# Bounds `decode` enforces on one reply (see the module docstring for why).
MAX_ELEMENTS = 1_000_000  # values and containers, all levels together (range lengths count)
MAX_HEX_DIGITS = 8192  # an int's hex payload (32768 bits, ~9900 decimal digits)
MAX_INT_BITS = 4 * MAX_HEX_DIGITS
MAX_DECIMAL_CHARS = 1000  # a Decimal's text
MAX_DECIMAL_EXPONENT = 5000  # |exponent| and |adjusted exponent| of a Decimal
MAX_ARRAY_BYTES = 64 << 20  # a numpy array's data
MAX_ITEMSIZE = 1 << 20  # a numpy dtype's item (a 'U' string of 262144 characters)
MAX_DIMS = 32
MAX_SHARED_HASH = 32  # distinct hashable values with one hash value
_ARRAY_KINDS = "biufcUS"
_ARRAY_LEAVES = frozenset({bool, int, float, complex, str, bytes})
_HASHED_TAGS = frozenset({"I", "X", "C", "Q", "M", "R"})
_SMALL_INT = 1 << 60  # distinct ints below this never share a hash (but -1 and -2)


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


def decode(data, handle_factory=None, *, max_elements: int = MAX_ELEMENTS):
    """Rebuild a value from `encode`'s output using genuine builtin types only.

    Handles become `handle_factory(id)` (a proxy), or Opaque markers without a factory. Every
    bound in the module docstring is checked; any failure (a bound, a malformed payload, or an
    error building a value) raises CodecError and nothing else."""
    budget = _Budget(max_elements)
    try:
        value = _decode(data, handle_factory, 0, budget)
        check_hash_collisions(budget.hashable)
    except CodecError:
        raise
    except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError, decimal's errors...
        raise CodecError(f"invalid value ({type(e).__name__})") from None
    return value


class _Budget:
    """What is left of one reply's element budget, and the hashable values seen so far."""

    __slots__ = ("hashable", "left")

    def __init__(self, elements: int):
        self.left = elements - 1
        self.hashable: list = []

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise CodecError("value has too many elements")


def _decode(data, hf, depth: int, b: _Budget):
    if depth > MAX_DEPTH + 2:
        raise CodecError("value nested too deeply")
    t = type(data)
    if t is int:
        if not -_SMALL_INT < data < _SMALL_INT:  # smaller ints' hashes are their values
            b.hashable.append(_integer(data))
        return data
    if t is float:
        b.hashable.append(data)
        return data
    if data is None or t is bool or t is str:
        return data
    if t is list:
        b.take(len(data))
        out = [_decode(v, hf, depth + 1, b) for v in data]
        if out:  # test code may turn it into a tuple and hash it: `set(map(tuple, f(x)))`
            b.hashable.append(tuple(out))
        return out
    if t is not dict or len(data) != 1:
        raise CodecError(f"unexpected {t.__name__} in encoded value")
    (tag, p), = data.items()
    d = depth + 1
    if tag in ("T", "S", "F"):
        b.take(len(_arr(p)))
        items = [_decode(v, hf, d, b) for v in p]
        if tag != "T":
            check_hash_collisions(items)  # before building the set: never quadratic
        out = tuple(items) if tag == "T" else set(items) if tag == "S" else frozenset(items)
        if tag != "S":
            b.hashable.append(out)
        return out
    if tag == "D":
        b.take(2 * len(_arr(p)))
        keys, values = [], []
        for pair in p:
            if type(pair) is not list or len(pair) != 2:
                raise CodecError("bad dict item")
            keys.append(_decode(pair[0], hf, d, b))
            values.append(_decode(pair[1], hf, d, b))
        check_hash_collisions(keys)
        return dict(zip(keys, values))
    out = _scalar(tag, p, hf, d, b)
    if tag in _HASHED_TAGS:
        b.hashable.append(out)
    return out


def _scalar(tag, p, hf, d: int, b: _Budget):
    """Every tag but the containers."""
    if tag == "I":
        return _integer({"I": p})
    if tag == "X":
        if p not in ("nan", "inf", "-inf"):
            raise CodecError("bad float")
        return float(p)
    if tag == "C":
        re_, im = _arr(p)
        return complex(_real(re_), _real(im))
    if tag == "B":
        return bytes.fromhex(_str(p))
    if tag == "BA":
        return bytearray.fromhex(_str(p))
    if tag == "R":
        a, c, s = (_integer(x) for x in _arr(p))
        r = range(a, c, s)
        b.take(len(r))  # test code may well call list() on it
        return r
    if tag == "Q":
        import fractions
        num, den = (_integer(x) for x in _arr(p))
        return fractions.Fraction(num, den)  # gcd of bounded ints: cheap
    if tag == "M":
        return _decimal(_str(p))
    if tag == "N":
        return _ndarray(_arr(p), d, b)
    if tag == "bt":
        obj = getattr(builtins, _str(p), None)
        if obj is None or p.startswith("_") or p in _UNSAFE_BUILTINS:
            raise CodecError(f"unknown builtin {p[:100]!r}")
        return obj
    if tag == "H":
        return hf(_int(p)) if hf else Opaque("object")
    if tag == "O":
        return Opaque(_str(p)[:100])
    raise CodecError(f"unknown tag {str(tag)[:100]!r}")


def _integer(data):
    """A plain JSON int or an {"I": hex} one, at most MAX_INT_BITS long."""
    if type(data) is dict and len(data) == 1 and "I" in data:
        text = _str(data["I"])
        if len(text) > MAX_HEX_DIGITS + 3:  # sign and 0x
            raise CodecError("int too large")
        data = int(text, 16)  # linear: a power-of-two base
    if type(data) is not int:
        raise CodecError("expected an int")
    if data.bit_length() > MAX_INT_BITS:
        raise CodecError("int too large")
    return data


def _real(data):
    """A complex number's part: a float (or an int)."""
    if type(data) is float:
        return data
    if type(data) is dict and len(data) == 1 and data.get("X") in ("nan", "inf", "-inf"):
        return float(data["X"])
    return _integer(data)


def _decimal(text: str):
    import decimal

    if len(text) > MAX_DECIMAL_CHARS:
        raise CodecError("Decimal too long")
    value = decimal.Decimal(text)
    if value.is_finite() and max(abs(value.as_tuple().exponent),
                                 abs(value.adjusted())) > MAX_DECIMAL_EXPONENT:
        raise CodecError("Decimal exponent too large")
    return value


def _ndarray(p: list, d: int, b: _Budget):
    """A numpy array of a plain dtype whose size, shape and leaves all agree."""
    import warnings

    import numpy as np

    dtype, shape, values = p
    if len(_str(dtype)) > 32:
        raise CodecError("bad dtype")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecated aliases are refused too
        dt = np.dtype(dtype)
    if (dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None
            or not 0 < dt.itemsize <= MAX_ITEMSIZE):
        raise CodecError(f"unsupported dtype {dtype!r}")
    shape = [_int(s) for s in _arr(shape)]
    if len(shape) > MAX_DIMS or any(not 0 <= s <= MAX_ELEMENTS for s in shape):
        raise CodecError("bad shape")
    size = math.prod(shape)
    if size * dt.itemsize > MAX_ARRAY_BYTES:
        raise CodecError("array too large")
    values = _decode(values, None, d, b)
    if _count_leaves(values) != size:
        raise CodecError("shape does not match the values")
    arr = np.array(values, dtype=dt)
    if arr.size != size:
        raise CodecError("shape does not match the values")
    return arr.reshape(shape)


def _count_leaves(value) -> int:
    """Scalars in a nested list (an array's values); anything else is refused."""
    n, todo = 0, [value]
    while todo:
        v = todo.pop()
        if type(v) is list:
            todo.extend(v)
        elif type(v) in _ARRAY_LEAVES:
            n += 1
        else:
            raise CodecError(f"{type(v).__name__} in an array")
    return n


def check_hash_collisions(values, limit: int = MAX_SHARED_HASH) -> None:
    """Raise CodecError when more than `limit` distinct hashable values share one hash.

    Numbers' hashes are public arithmetic (an int's is its value modulo 2**61 - 1), so a program
    can return thousands of distinct values with one hash; a set or dict of them, built by decode
    or by test code (`set(f(x))` runs in the judge), costs quadratic time in one uninterruptible
    C call. With at most `limit` per hash, building any set of n values costs under n * limit
    comparisons. Honest values essentially never get there: ints collide only 2**61 apart (the
    powers of two up to 2**1900 share at most 32 hashes), and strings' hashes are keyed."""
    if len(values) <= limit:
        return
    try:
        hashes = list(map(hash, values))
    except TypeError:  # an unhashable leaf (a tuple holding a list): not a set member anyway
        hashes = [_hash_or_none(v) for v in values]
    counts = collections.Counter(hashes)
    crowded = {h for h, c in counts.items() if c > limit and h is not None}
    if not crowded:
        return
    groups: dict = {h: [] for h in crowded}
    for v, h in zip(values, hashes):
        if h in crowded:
            groups[h].append(v)
    for group in groups.values():
        distinct: set = set()
        for i in range(0, len(group), 1024):  # each step short: the judge's timer can stop it
            distinct.update(group[i:i + 1024])
            if len(distinct) > limit:
                raise CodecError(f"more than {limit} distinct values share one hash")


def _hash_or_none(value):
    try:
        return hash(value)
    except TypeError:
        return None


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
