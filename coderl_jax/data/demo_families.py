"""The problem families of the bundled demo set (see `coderl_jax.data.demo`).

A family is a kind of small programming task (add a constant, count a letter, sum the elements
above a threshold...). Each point of its parameter space (operator, constants, output words) gives
one concrete task: a `Spec` holding the natural-language task, 1-3 reference solution bodies, a
few plausible *wrong* bodies (near misses: an off-by-one, a missing edge case, the wrong
operator) and the edge cases its tests must contain. `demo.py` turns a spec into a `Problem` in
either APPS format, running the first reference body to compute every expected output.

Bodies are written once for both formats, over the input names of the family's `Domain`
(`n` / `a, b` / `s` / list `a`): an expression, or a block of statements that assigns `ans`.

Families (the solution mostly differs by a constant, operator or word copied from the question):
  introductory  int_arith (n + k, n - k, n * k), int_divmod (floor division / modulo with negative
                n), two_int_op, str_transform (upper, reverse, s[:k], s[-k:] ...), char_count,
                list_agg, threshold (n > k, n >= k ... -> YES/NO words), classify (parity, sign),
                loop_sum (1..n sums, multiples of k, factorial)
  interview     list_filter (count / sum of elements > k, divisible by k ...), max_default (max
                of matching elements or a default), list_map, words, palindrome, digits (negative
                n), two_step ((n + a) * b ...), char_classes, fizzbuzz (a, b, words), running
  competition   gcd_lcm, primes, subarray (Kadane, best window of k), pairs, rle, second (second
                largest distinct), bits, frequent (ties, no-answer default), sequence
  held-out only between, str_compose, filter_map, spread_empty: compositions of train families.
Edge cases (zero, negatives, ties, boundaries equal to k, nothing matching, empty input in the
call format) are in every problem's hidden tests, so a near miss passes some tests and fails
others: the headroom RL and critical sampling need.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Callable

# ----------------------------------------------------------------------------------- bodies


@dataclasses.dataclass(frozen=True)
class Body:
    """One solution body: `expr` (an expression) or `block` (statements assigning `ans`)."""

    kind: str  # "expr" | "block"
    code: str
    # a near miss wrong only where a stdin judge cannot see it (empty input, spacing, word order:
    # CodeRL compares whitespace-split tokens): used in call-format problems only
    call_only: bool = False


def E(code: str, call_only: bool = False) -> Body:
    return Body("expr", code, call_only)


def B(code: str) -> Body:
    return Body("block", code)


# ----------------------------------------------------------------------------------- domains
# A domain says what a problem reads: its argument names, how a test's arguments are written on
# stdin, how the input is described, and how random typical arguments are drawn.
# `nonempty()` is the domain a stdin problem uses: CodeRL's harness makes `input()` raise
# EOFError on an empty line, so stdin tests never hold an empty string or an empty list.


@dataclasses.dataclass(frozen=True)
class Ints:
    """One integer n."""

    lo: int
    hi: int
    kind = "int"
    args = ("n",)
    read = "n = int(input())"

    def given(self) -> str:
        return "an integer n"

    def given_call(self) -> str:
        return f"an integer n ({self.lo} <= n <= {self.hi})"

    def input_section(self) -> str:
        return f"The only line contains one integer n ({self.lo} <= n <= {self.hi})."

    def stdin(self, args: tuple) -> str:
        return f"{args[0]}\n"

    def nonempty(self) -> "Ints":
        return self

    def sample(self, rng: random.Random) -> tuple:
        return (rng.randint(self.lo, self.hi),)

    def valid(self, args: tuple) -> bool:
        return self.lo <= args[0] <= self.hi


@dataclasses.dataclass(frozen=True)
class Ints2:
    """Two integers a and b on one line."""

    lo: int
    hi: int
    kind = "int2"
    args = ("a", "b")
    read = "a, b = map(int, input().split())"

    def given(self) -> str:
        return "two integers a and b"

    def given_call(self) -> str:
        return f"two integers a and b ({self.lo} <= a, b <= {self.hi})"

    def input_section(self) -> str:
        return f"The only line contains two integers a and b ({self.lo} <= a, b <= {self.hi})."

    def stdin(self, args: tuple) -> str:
        return f"{args[0]} {args[1]}\n"

    def nonempty(self) -> "Ints2":
        return self

    def sample(self, rng: random.Random) -> tuple:
        return (rng.randint(self.lo, self.hi), rng.randint(self.lo, self.hi))

    def valid(self, args: tuple) -> bool:
        return all(self.lo <= x <= self.hi for x in args)


@dataclasses.dataclass(frozen=True)
class Text:
    """One line of text s (may be empty when min_len is 0)."""

    alphabet: str
    what: str  # "lowercase English letters"
    min_len: int
    max_len: int
    kind = "str"
    args = ("s",)
    read = "s = input()"

    def given(self) -> str:
        return "a string s"

    def given_call(self) -> str:
        return f"a string s of {self.what} (length {self.min_len} to {self.max_len})"

    def input_section(self) -> str:
        return (f"The only line contains the string s ({self.min_len} <= |s| <= {self.max_len}),"
                f" made of {self.what}.")

    def stdin(self, args: tuple) -> str:
        return f"{args[0]}\n"

    def nonempty(self) -> "Text":
        return dataclasses.replace(self, min_len=max(1, self.min_len))

    def sample(self, rng: random.Random) -> tuple:
        k = rng.randint(max(self.min_len, 1), self.max_len)
        s = "".join(rng.choice(self.alphabet) for _ in range(k)).strip()
        return (s if len(s) >= self.min_len else self.alphabet[0] * self.min_len,)

    def valid(self, args: tuple) -> bool:
        s = args[0]
        return (self.min_len <= len(s) <= self.max_len and all(c in self.alphabet for c in s)
                and s == s.strip())  # no leading/trailing spaces: invisible in the statement


@dataclasses.dataclass(frozen=True)
class IntList:
    """A list a of integers (stdin: its length n, then the elements)."""

    n_lo: int
    n_hi: int
    lo: int
    hi: int
    kind = "list"
    args = ("a",)
    read = "n = int(input())\na = list(map(int, input().split()))"

    def given(self) -> str:
        return "a list a of integers"

    def given_call(self) -> str:
        return (f"a list a of {self.n_lo} to {self.n_hi} integers"
                f" (each between {self.lo} and {self.hi})")

    def input_section(self) -> str:
        return (f"The first line contains one integer n ({self.n_lo} <= n <= {self.n_hi}) — the"
                f" number of elements. The second line contains n integers a_1, a_2, ..., a_n"
                f" ({self.lo} <= a_i <= {self.hi}).")

    def stdin(self, args: tuple) -> str:
        a = args[0]
        return f"{len(a)}\n{' '.join(map(str, a))}\n"

    def nonempty(self) -> "IntList":
        return dataclasses.replace(self, n_lo=max(1, self.n_lo))

    def sample(self, rng: random.Random) -> tuple:
        k = rng.randint(max(self.n_lo, 2), self.n_hi)
        return ([rng.randint(self.lo, self.hi) for _ in range(k)],)

    def valid(self, args: tuple) -> bool:
        a = args[0]
        return self.n_lo <= len(a) <= self.n_hi and all(self.lo <= x <= self.hi for x in a)


# ----------------------------------------------------------------------------------- specs


@dataclasses.dataclass(frozen=True)
class Spec:
    """One concrete task of a family (before phrasing, tests and format are chosen)."""

    domain: object  # Ints | Ints2 | Text | IntList
    task: str  # a noun phrase ("n increased by 7"), or a condition clause when output="bool"
    fn_name: str
    bodies: tuple[Body, ...]
    near_misses: tuple[Body, ...]
    edges: tuple[tuple, ...] = ()  # argument tuples every problem of this task must test
    output: str = "value"  # "value" | "spaced" (a list printed on one line) | "bool"
    words: tuple[str, str] = ("YES", "NO")  # what stdin programs print for True / False
    out_desc: str = "one integer — the answer"  # stdin Output section (value / spaced)
    note: str = ""  # an extra sentence of the statement (an edge-case rule)
    typical: Callable[[random.Random], tuple] | None = None  # biased sampler of typical args
    formats: tuple[str, ...] = ("stdin", "call")  # APPS formats this task can take


@dataclasses.dataclass(frozen=True)
class Family:
    """A parameter space and the spec of each of its points."""

    name: str
    difficulty: str
    space: tuple[dict, ...]
    spec: Callable[[dict], Spec]
    n_train: int
    n_heldout: int
    heldout_only: bool = False  # a harder variant shown only in the held-out split
    formats: tuple[str, ...] = ("stdin", "call")  # APPS formats its problems may take


def grid(**axes) -> tuple[dict, ...]:
    """Every combination of the given axes, in a fixed order."""
    names = list(axes)
    return tuple(dict(zip(names, values)) for values in itertools.product(*axes.values()))


WORD_PAIRS = (("YES", "NO"), ("Yes", "No"), ("yes", "no"))
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIXED = LETTERS + LETTERS.upper()


def _pick(seq, i):
    return seq[i % len(seq)]


# =========================================================================== introductory


def _int_arith(p):
    k, op, w = p["k"], p["op"], p["w"]
    sym = {"add": "+", "sub": "-", "mul": "*"}[op]
    other = {"add": "-", "sub": "+", "mul": "+"}[op]
    task = _pick({
        "add": [f"n increased by {k}", f"the sum of n and {k}", f"n plus {k}"],
        "sub": [f"n decreased by {k}", f"the difference n - {k}", f"n minus {k}"],
        "mul": [f"n multiplied by {k}", f"the product of n and {k}", f"{k} times n"],
    }[op], w)
    misses = [E(f"n {sym} {k + 1}"), E(f"n {other} {k}")]
    if op == "sub":
        misses.append(E(f"{k} - n"))
    return Spec(
        domain=Ints(-1000, 1000), task=task,
        fn_name=_pick({"add": ["add_value", "increase"], "sub": ["subtract", "decrease"],
                       "mul": ["multiply", "scale"]}[op], w),
        bodies=(E(f"n {sym} {k}"), B(f"ans = n\nans {sym}= {k}")),
        near_misses=tuple(misses), edges=((0,), (-7,), (1000,)))


INT_ARITH = Family(
    "int_arith", "introductory",
    grid(op=("add", "sub", "mul"), k=tuple(range(2, 60)), w=(0, 1, 2)), _int_arith, 18, 3)


def _int_divmod(p):
    k, op = p["k"], p["op"]
    if op == "div":
        task = _pick([f"n divided by {k}, rounded down to an integer",
                      f"the largest integer q such that q * {k} <= n"], p["w"])
        bodies = (E(f"n // {k}"), B(f"ans = (n - n % {k}) // {k}"))
        misses = (E(f"int(n / {k})"), E(f"n // {k + 1}"), E(f"n % {k}"))
        note = f"Note that n may be negative: for example, -1 divided by {k} rounded down is -1."
    else:
        task = _pick([f"the remainder of n divided by {k}, a number from 0 to {k - 1}",
                      f"n modulo {k} (always between 0 and {k - 1})"], p["w"])
        bodies = (E(f"n % {k}"), B(f"ans = n - n // {k} * {k}"))
        misses = (E(f"n % {k + 1}"), E(f"n // {k}")) + ((E(f"abs(n) % {k}"),) if k > 2 else ())
        note = f"Note that n may be negative: for example, -1 modulo {k} is {-1 % k}."
    return Spec(
        domain=Ints(-500, 500), task=task, fn_name=_pick(
            {"div": ["divide", "floor_div"], "mod": ["remainder", "modulo"]}[op], p["w"]),
        bodies=bodies, near_misses=misses, note=note,
        edges=((0,), (-1,), (-k - 1,), (k,), (2 * k + 1,)))


INT_DIVMOD = Family(
    "int_divmod", "introductory",
    grid(op=("div", "mod"), k=tuple(range(2, 13)), w=(0, 1)), _int_divmod, 12, 3)


_TWO_OPS = {
    "sum": (["the sum of a and b", "a plus b"], ["add", "total"],
            (E("a + b"), E("sum([a, b])")), (E("a - b"), E("a * b"))),
    "diff": (["a minus b", "the difference a - b"], ["difference", "subtract"],
             (E("a - b"), B("ans = a\nans -= b")), (E("b - a"), E("abs(a - b)"))),
    "prod": (["the product of a and b", "a multiplied by b"], ["product", "multiply"],
             (E("a * b"), B("ans = 0\nfor _ in range(abs(b)):\n    ans += a\nif b < 0:\n    ans = -ans")),
             (E("a + b"), E("abs(a * b)"))),
    "max": (["the larger of a and b", "the maximum of a and b"], ["larger", "maximum"],
            (E("max(a, b)"), B("ans = a\nif b > a:\n    ans = b")), (E("min(a, b)"), E("a"))),
    "min": (["the smaller of a and b", "the minimum of a and b"], ["smaller", "minimum"],
            (E("min(a, b)"), B("ans = a\nif b < a:\n    ans = b")), (E("max(a, b)"), E("b"))),
    "absdiff": (["the distance between a and b on the number line", "the absolute value of a - b"],
                ["distance", "abs_difference"],
                (E("abs(a - b)"), E("max(a, b) - min(a, b)")), (E("a - b"), E("abs(a) - abs(b)"))),
}


def _two_int_op(p):
    tasks, names, bodies, misses = _TWO_OPS[p["op"]]
    return Spec(domain=Ints2(-100, 100), task=_pick(tasks, p["w"]), fn_name=_pick(names, p["w"]),
                bodies=bodies, near_misses=misses,
                edges=((3, 3), (-5, 8), (9, -4), (0, -6)))


TWO_INT_OP = Family("two_int_op", "introductory",
                    grid(op=tuple(_TWO_OPS), w=(0, 1)), _two_int_op, 12, 3)


def _str_transform(p):
    op, k = p["op"], p["k"]
    table = {
        "upper": ("s with every letter converted to uppercase", "to_upper",
                  (E("s.upper()"), B("ans = ''\nfor c in s:\n    ans += c.upper()")),
                  (E("s.lower()"), E("s.capitalize()"))),
        "lower": ("s with every letter converted to lowercase", "to_lower",
                  (E("s.lower()"), E("''.join(c.lower() for c in s)")),
                  (E("s.upper()"), E("s.swapcase()"))),
        "reverse": ("s written backwards", "reverse",
                    (E("s[::-1]"), E("''.join(reversed(s))")),
                    (E("s"), E("s[1:][::-1]"))),
        "swapcase": ("s with the case of every letter swapped (lowercase letters become"
                     " uppercase and uppercase letters become lowercase)", "swap_case",
                     (E("s.swapcase()"), E("''.join(c.lower() if c.isupper() else c.upper() for c in s)")),
                     (E("s.upper()"), E("s.lower()"))),
        "repeat": (f"the string s repeated {k} times", "repeat",
                   (E(f"s * {k}"), B(f"ans = ''\nfor _ in range({k}):\n    ans += s")),
                   (E(f"s * {k + 1}"), E(f"s * {k - 1}"))),
        "prefix": (f"the first {k} characters of s (the whole string if it is shorter)", "prefix",
                   (E(f"s[:{k}]"), E(f"s if len(s) < {k} else s[:{k}]")),
                   (E(f"s[:{k + 1}]"), E(f"s[{k}:]"))),
        "suffix": (f"the last {k} characters of s (the whole string if it is shorter)", "suffix",
                   (E(f"s[-{k}:]"), E(f"s[max(0, len(s) - {k}):]")),
                   # s[len(s) - k:] is wrong only for k/2 < len(s) < k
                   (E(f"s[{k}:]"), E(f"s[-{k + 1}:]")) + ((E(f"s[len(s) - {k}:]"),) if k >= 3 else ())),
    }
    task, fn, bodies, misses = table[op]
    edges = [("",), ("q",), ("aBcD",)]
    if op in ("prefix", "suffix"):
        edges += [("xyzwvutsrq"[:k - 1],), ("HelloWorldAgain"[:k],), ("HelloWorldAgain",)]
    return Spec(domain=Text(MIXED, "English letters", 0, 15), task=task, fn_name=fn,
                bodies=bodies, near_misses=misses, edges=tuple(edges), out_desc="the resulting string")


STR_TRANSFORM = Family(
    "str_transform", "introductory",
    tuple(dict(op=o, k=0) for o in ("upper", "lower", "reverse", "swapcase"))
    + grid(op=("repeat",), k=(2, 3, 4)) + grid(op=("prefix", "suffix"), k=(1, 2, 3, 4, 5)),
    _str_transform, 16, 3)


def _char_count(p):
    c, op = p["c"], p["op"]
    if op == "exact":
        task = _pick([f"how many times the lowercase letter '{c}' occurs in s (the uppercase"
                      f" letter '{c.upper()}' does not count)",
                      f"the number of characters of s equal to '{c}' (case matters)"], p["w"])
        bodies = (E(f"s.count('{c}')"), B(f"ans = 0\nfor ch in s:\n    if ch == '{c}':\n        ans += 1"))
        misses = (E(f"s.lower().count('{c}')"), E(f"s.count('{c.upper()}')"), E(f"s.count('{c}') + 1"))
    else:
        task = _pick([f"how many times the letter '{c}' occurs in s, counting both '{c}' and"
                      f" '{c.upper()}'", f"the number of letters '{c}' in s, ignoring case"], p["w"])
        bodies = (E(f"s.lower().count('{c}')"), E(f"sum(1 for ch in s if ch.lower() == '{c}')"))
        misses = (E(f"s.count('{c}')"), E(f"s.count('{c.upper()}')"))
    other = "b" if c == "a" else "a"
    alphabet = "".join(sorted(set(c + c.upper() + other + other.upper() + "xyzXY")))

    def typical(rng):
        return ("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12))),)

    return Spec(domain=Text(MIXED, "English letters", 0, 20), task=task,
                fn_name=_pick(["count_letter", "letter_count"], p["w"]),
                bodies=bodies, near_misses=misses, typical=typical,
                edges=(("",), (c * 3,), (c.upper() + c + c.upper(),), (other * 4,)))


CHAR_COUNT = Family("char_count", "introductory",
                    grid(c=tuple(LETTERS), op=("exact", "nocase"), w=(0, 1)), _char_count, 16, 3)


_AGG = {
    "sum": (["the sum of the elements of a", "the total of all numbers in a"], "total",
            (E("sum(a)"), B("ans = 0\nfor x in a:\n    ans += x")),
            (E("sum(a) - a[0]"), E("max(a)"), E("sum(a[1:])"))),
    "max": (["the largest element of a", "the maximum value in a"], "largest",
            (E("max(a)"), B("ans = a[0]\nfor x in a:\n    if x > ans:\n        ans = x")),
            (B("ans = 0\nfor x in a:\n    if x > ans:\n        ans = x"), E("min(a)"), E("a[-1]"))),
    "min": (["the smallest element of a", "the minimum value in a"], "smallest",
            (E("min(a)"), B("ans = a[0]\nfor x in a:\n    if x < ans:\n        ans = x")),
            (B("ans = 0\nfor x in a:\n    if x < ans:\n        ans = x"), E("max(a)"), E("a[0]"))),
    "sumsq": (["the sum of the squares of the elements of a",
               "the sum of x * x over all elements x of a"], "sum_squares",
              (E("sum(x * x for x in a)"), B("ans = 0\nfor x in a:\n    ans += x ** 2")),
              (E("sum(a) ** 2"), E("sum(x * 2 for x in a)"))),
    "range": (["the difference between the largest and the smallest element of a",
               "max(a) - min(a), the spread of the values in a"], "spread",
              (E("max(a) - min(a)"), B("b = sorted(a)\nans = b[-1] - b[0]")),
              (E("a[-1] - a[0]"), E("max(a) - a[0]"))),
}


def _list_agg(p):
    tasks, fn, bodies, misses = _AGG[p["op"]]
    return Spec(domain=IntList(1, 10, -50, 50), task=_pick(tasks, p["w"]), fn_name=fn,
                bodies=bodies, near_misses=misses,
                edges=(([7],), ([-3, -8, -1],), ([0, 0, 0],), ([5, -2, 9, -2, 4],)))


LIST_AGG = Family("list_agg", "introductory",
                  grid(op=tuple(_AGG), w=(0, 1)), _list_agg, 12, 3)


_CMP = {
    ">": ["n is greater than {k}", "n is strictly larger than {k}"],
    ">=": ["n is at least {k}", "n is greater than or equal to {k}"],
    "<": ["n is less than {k}", "n is strictly smaller than {k}"],
    "<=": ["n is at most {k}", "n is less than or equal to {k}"],
    "==": ["n is equal to {k}", "n equals {k}"],
    "!=": ["n is different from {k}", "n is not equal to {k}"],
}
_CMP_MISS = {">": ">=", ">=": ">", "<": "<=", "<=": "<", "==": ">=", "!=": ">"}


def _threshold(p):
    k, op = p["k"], p["op"]
    words = WORD_PAIRS[p["words"]]

    def typical(rng):
        return (rng.choice([k + rng.randint(-3, 3), rng.randint(-100, 100)]),)

    return Spec(
        domain=Ints(-100, 100), task=_pick(_CMP[op], p["w"]).format(k=k),
        fn_name=_pick(["check", "compare"], p["w"]), output="bool", words=words,
        bodies=(E(f"n {op} {k}"), B(f"ans = False\nif n {op} {k}:\n    ans = True")),
        near_misses=(E(f"n {_CMP_MISS[op]} {k}"), E(f"n {op} {k + 1}"), E(f"not (n {op} {k})")),
        edges=((k,), (k - 1,), (k + 1,), (-100,), (100,)), typical=typical)


THRESHOLD = Family("threshold", "introductory",
                   grid(op=tuple(_CMP), k=tuple(range(-20, 61)), words=(0, 1, 2), w=(0, 1)),
                   _threshold, 18, 3)


_PARITY = (("even", "odd"), ("EVEN", "ODD"), ("Even", "Odd"))
_SIGN = (("positive", "negative", "zero"), ("POSITIVE", "NEGATIVE", "ZERO"), ("plus", "minus", "zero"))


def _classify(p):
    if p["op"] == "parity":
        we, wo = _PARITY[p["words"]]
        return Spec(
            domain=Ints(-1000, 1000), fn_name="parity",
            task=f'the word "{we}" if n is even and the word "{wo}" if n is odd',
            bodies=(E(f"'{we}' if n % 2 == 0 else '{wo}'"),
                    B(f"if n % 2 == 0:\n    ans = '{we}'\nelse:\n    ans = '{wo}'")),
            near_misses=(E(f"'{wo}' if n % 2 == 0 else '{we}'"), E(f"'{we}' if n > 0 else '{wo}'")),
            edges=((0,), (-3,), (-4,), (7,)), out_desc="one word — the answer")
    wp, wn, wz = _SIGN[p["words"]]
    return Spec(
        domain=Ints(-1000, 1000), fn_name="sign",
        task=f'"{wp}" if n is greater than zero, "{wn}" if n is less than zero and "{wz}" if n is zero',
        bodies=(B(f"if n > 0:\n    ans = '{wp}'\nelif n < 0:\n    ans = '{wn}'\nelse:\n    ans = '{wz}'"),
                E(f"'{wp}' if n > 0 else '{wn}' if n < 0 else '{wz}'")),
        near_misses=(E(f"'{wp}' if n > 0 else '{wn}'"), E(f"'{wp}' if n >= 0 else '{wn}'"),
                     E(f"'{wn}' if n > 0 else '{wp}' if n < 0 else '{wz}'")),
        edges=((0,), (-1,), (1,), (-1000,)), out_desc="one word — the answer")


CLASSIFY = Family("classify", "introductory",
                  grid(op=("parity", "sign"), words=(0, 1, 2)), _classify, 8, 2)


def _loop_sum(p):
    op, k = p["op"], p["k"]
    table = {
        "sum": ("the sum 1 + 2 + ... + n (which is 0 when n is 0)", "sum_to",
                (E("n * (n + 1) // 2"), B("ans = 0\nfor i in range(1, n + 1):\n    ans += i"),
                 E("sum(range(n + 1))")),
                (E("n * (n - 1) // 2"), B("ans = 0\nfor i in range(1, n):\n    ans += i"))),
        "squares": ("the sum of squares 1*1 + 2*2 + ... + n*n (0 when n is 0)", "sum_of_squares",
                    (E("sum(i * i for i in range(1, n + 1))"),
                     B("ans = 0\nfor i in range(n + 1):\n    ans += i * i")),
                    (E("sum(i * i for i in range(1, n))"), E("n * (n + 1) // 2"))),
        "factorial": ("n! = 1 * 2 * ... * n (by definition 0! = 1)", "factorial",
                      (B("ans = 1\nfor i in range(2, n + 1):\n    ans *= i"),
                       B("import math\nans = math.factorial(n)")),
                      (B("ans = 1\nfor i in range(2, n):\n    ans *= i"),
                       B("ans = 0\nfor i in range(1, n + 1):\n    ans *= i"))),
        "summult": (f"the sum of all multiples of {k} from 1 to n inclusive", "sum_multiples",
                    (E(f"sum(range({k}, n + 1, {k}))"),
                     B(f"ans = 0\nfor i in range(1, n + 1):\n    if i % {k} == 0:\n        ans += i")),
                    (E(f"sum(range({k}, n, {k}))"), E(f"sum(range({k + 1}, n + 1, {k + 1}))"))),
        "countmult": (f"how many integers from 1 to n are divisible by {k}", "count_multiples",
                      (E(f"n // {k}"), E(f"sum(1 for i in range(1, n + 1) if i % {k} == 0)")),
                      (E(f"n // {k} + 1"), E(f"(n - 1) // {k}"), E(f"n // {k + 1}"))),
    }
    task, fn, bodies, misses = table[op]
    hi = 12 if op == "factorial" else 200
    edges = [(0,), (1,), (hi,)]
    if k:
        edges += [(k,), (k - 1,), (3 * k,)]
    else:
        edges += [(5,)]
    return Spec(domain=Ints(0, hi), task=task, fn_name=fn, bodies=bodies, near_misses=misses,
                edges=tuple(edges))


LOOP_SUM = Family(
    "loop_sum", "introductory",
    tuple(dict(op=o, k=0) for o in ("sum", "squares", "factorial"))
    + grid(op=("summult", "countmult"), k=tuple(range(2, 10))), _loop_sum, 16, 3)

# ============================================================================== interview

_PREDS = {
    "gt": ("greater than {k}", "x > {k}", "x >= {k}"),
    "ge": ("at least {k}", "x >= {k}", "x > {k}"),
    "lt": ("less than {k}", "x < {k}", "x <= {k}"),
    "div": ("divisible by {k}", "x % {k} == 0", "x % {k} != 0"),
    "even": ("even", "x % 2 == 0", "x % 2 == 1"),
    "odd": ("odd", "x % 2 != 0", "x % 2 == 0"),
    "neg": ("negative", "x < 0", "x <= 0"),
}


def _pred(p):
    words, cond, wrong = _PREDS[p["pred"]]
    k = p["k"]
    return words.format(k=k), cond.format(k=k), wrong.format(k=k)


def _list_filter(p):
    words, cond, wrong = _pred(p)
    k = p["k"]
    if p["agg"] == "sum" and (p["pred"] == "neg" or k == 0 and p["pred"] in ("gt", "ge", "lt")):
        wrong = "x != 0"  # strict and non-strict at 0 give the same sum
    if p["agg"] == "count":
        task = f"how many elements of a are {words}"
        bodies = (E(f"sum(1 for x in a if {cond})"), E(f"len([x for x in a if {cond}])"),
                  B(f"ans = 0\nfor x in a:\n    if {cond}:\n        ans += 1"))
        misses = (E(f"sum(1 for x in a if {wrong})"), E(f"sum(x for x in a if {cond})"))
    else:
        task = f"the sum of the elements of a that are {words}"
        bodies = (E(f"sum(x for x in a if {cond})"),
                  B(f"ans = 0\nfor x in a:\n    if {cond}:\n        ans += x"))
        misses = (E(f"sum(x for x in a if {wrong})"), E(f"sum(1 for x in a if {cond})"))
    edges = [([],), ([k, k, k],), ([0, -1, -2],), ([1, 3, 5, 7, 9],), ([k - 1, k, k + 1, 2 * k],)]
    return Spec(domain=IntList(0, 10, -30, 30), task=task,
                fn_name=_pick(["count_if", "how_many"], k) if p["agg"] == "count" else "sum_if",
                bodies=bodies, near_misses=misses, edges=tuple(edges),
                note="If there are no such elements, the answer is 0.")


LIST_FILTER = Family(
    "list_filter", "interview",
    grid(agg=("count", "sum"), pred=("gt", "ge", "lt"), k=tuple(range(-5, 16)))
    + grid(agg=("count", "sum"), pred=("div",), k=(2, 3, 4, 5))
    + grid(agg=("count", "sum"), pred=("even", "odd", "neg"), k=(0,)),
    _list_filter, 14, 3)


def _max_default(p):
    words, cond, _ = _pred(p)
    d, best = p["d"], p["best"]
    f = "max" if best == "max" else "min"
    cmp = ">" if best == "max" else "<"
    which = "largest" if best == "max" else "smallest"
    k = p["k"]
    # `ans = d` as the starting point is wrong only when a matching value lies beyond d
    beyond = [v for v in range(-30, 31) if eval(cond, {"x": v}) and (v < d if best == "max" else v > d)]
    start_from_default = (
        B(f"ans = {d}\nfor x in a:\n    if {cond} and x {cmp} ans:\n        ans = x"),) if beyond else ()
    extra_edge = (([beyond[len(beyond) // 2], 31 - 1 if best == "min" else -30],),) if beyond else ()
    unmatched = [v for v in range(-30, 31) if not eval(cond, {"x": v}) and v != d]
    extra_edge += (([unmatched[0], unmatched[len(unmatched) // 2], unmatched[-1]],),)
    return Spec(
        domain=IntList(0, 10, -30, 30),
        task=f"the {which} element of a that is {words}",
        note=f"If a has no such element, the answer is {d}.",
        fn_name=f"{which}_{p['pred']}",
        bodies=(E(f"{f}([x for x in a if {cond}], default={d})"),
                B(f"b = [x for x in a if {cond}]\nans = {f}(b) if b else {d}"),
                B(f"ans = None\nfor x in a:\n    if {cond} and (ans is None or x {cmp} ans):\n"
                  f"        ans = x\nif ans is None:\n    ans = {d}")),
        near_misses=(E(f"{f}(x for x in a if {cond})"), E(f"{f}(a)")) + start_from_default,
        edges=(([],), ([1, 3, 5, 7, 9],), ([-9, -12, -4, 6],), ([k + 1, k - 1],), ([k + 1, k + 5],),
               ([28, 30, 25, 2],)) + extra_edge)


MAX_DEFAULT = Family(
    "max_default", "interview",
    grid(best=("max", "min"), pred=("even", "odd", "neg"), k=(0,), d=(-1, 0, 100))
    + grid(best=("max", "min"), pred=("gt", "lt"), k=tuple(range(0, 11)), d=(-1, 0, 100))
    + grid(best=("max", "min"), pred=("div",), k=(3, 4, 5), d=(-1, 0, 100)),
    _max_default, 12, 3)


def _list_map(p):
    op, k = p["op"], p["k"]
    table = {
        "mul": (f"every element of a multiplied by {k}", f"x * {k}", f"x * {k + 1}"),
        "add": (f"every element of a increased by {k}", f"x + {k}", f"x + {k - 1}"),
        "sub": (f"every element of a decreased by {k}", f"x - {k}", f"{k} - x"),
        "mod": (f"the remainder of every element of a divided by {k} (between 0 and {k - 1})",
                f"x % {k}", f"abs(x) % {k}" if k > 2 else f"x // {k}"),
        "square": ("the square of every element of a", "x * x", "x * 2"),
        "abs": ("the absolute value of every element of a", "abs(x)", "x if x > 0 else 0"),
    }
    words, expr, wrong = table[op]
    return Spec(
        domain=IntList(0, 10, -30, 30), task=f"the list of {words}, in the original order",
        fn_name=_pick(["transform", "convert"], k), output="spaced",
        out_desc="the resulting numbers on one line, separated by spaces",
        bodies=(E(f"[{expr} for x in a]"), E(f"list(map(lambda x: {expr}, a))"),
                B(f"ans = []\nfor x in a:\n    ans.append({expr})")),
        near_misses=(E(f"[{wrong} for x in a]"), E(f"[{expr} for x in a[1:]]")),
        edges=(([],), ([5],), ([-7, 0, 7],), ([-1, -2, 3],)))


LIST_MAP = Family(
    "list_map", "interview",
    grid(op=("mul", "mod"), k=tuple(range(2, 10))) + grid(op=("add", "sub"), k=tuple(range(1, 21)))
    + grid(op=("square", "abs"), k=(0,)), _list_map, 12, 3)


_WORDS = {
    "count": (["the number of words in s", "how many words s contains"], "count_words",
              (E("len(s.split())"), B("ans = 0\nfor w in s.split():\n    ans += 1")),
              (E("len(s.split(' '))"), E("s.count(' ') + 1")), "value", "one integer — the answer"),
    "longest": (["the length of the longest word of s (0 if s has no words)",
                 "the largest number of letters in a word of s (0 if there are no words)"],
                "longest_word",
                (E("max((len(w) for w in s.split()), default=0)"),
                 B("ans = 0\nfor w in s.split():\n    ans = max(ans, len(w))")),
                (E("max(len(w) for w in s.split())", call_only=True), E("len(s.split()[0])")),
                "value", "one integer — the answer"),
    "reverse": (["the words of s in reverse order, separated by single spaces",
                 "s with the order of its words reversed (words separated by single spaces)"],
                "reverse_words",
                (E("' '.join(s.split()[::-1])"), E("' '.join(reversed(s.split()))")),
                (E("s[::-1]"), E("' '.join(s.split())")), "value", "the resulting string"),
    "acronym": (["the first letters of the words of s, in uppercase, written together",
                 "the acronym of s: the first letter of every word, converted to uppercase"],
                "acronym",
                (E("''.join(w[0] for w in s.split()).upper()"),
                 B("ans = ''\nfor w in s.split():\n    ans += w[0].upper()")),
                (E("''.join(w[0] for w in s.split())"), E("s[0].upper()")),
                "value", "the resulting string"),
    "capital": (["s with the first letter of every word in uppercase, words separated by single"
                 " spaces", "every word of s capitalized (first letter uppercase), joined by single"
                 " spaces"], "capitalize_words",
                (E("' '.join(w[0].upper() + w[1:] for w in s.split())"),
                 B("ans = ' '.join(w.capitalize() for w in s.split())")),
                (E("s.capitalize()"), E("s.title()", call_only=True)), "value", "the resulting string"),
}


def _words(p):
    tasks, fn, bodies, misses, output, out_desc = _WORDS[p["op"]]

    def typical(rng):
        words = ["".join(rng.choice("abcdefghiklmnoprstu") for _ in range(rng.randint(1, 7)))
                 for _ in range(rng.randint(2, 5))]
        return (" ".join(words),)

    return Spec(domain=Text(LETTERS + " ", "lowercase English letters and spaces", 0, 40),
                task=_pick(tasks, p["w"]), fn_name=fn, bodies=bodies, near_misses=misses,
                # a stdin judge compares unordered words: any order would pass "reverse"
                formats=("call",) if p["op"] == "reverse" else ("stdin", "call"),
                output=output, out_desc=out_desc, typical=typical,
                note="A word is a maximal run of letters; words may be separated by several spaces.",
                edges=(("",), ("hello",), ("the  quick brown fox",), ("a bb ccc",),
                       ("jumped over  the lazy dogs",)))


WORDS = Family("words", "interview", grid(op=tuple(_WORDS), w=(0, 1)), _words, 12, 3)


def _palindrome(p):
    words = WORD_PAIRS[p["words"]]
    if p["op"] == "plain":
        task = _pick(["s is a palindrome, that is, s reads the same from left to right and from"
                      " right to left (uppercase and lowercase letters are different)",
                      "s is equal to its reverse (letter case matters)"], p["w"])
        bodies = (E("s == s[::-1]"),
                  B("ans = True\nfor i in range(len(s) // 2):\n    if s[i] != s[-1 - i]:\n        ans = False"))
        misses = (E("s.lower() == s.lower()[::-1]"), E("s[0] == s[-1]"))
    else:
        task = _pick(["s is a palindrome when the case of letters is ignored",
                      "s reads the same backwards and forwards, ignoring the case of letters"],
                     p["w"])
        bodies = (E("s.lower() == s.lower()[::-1]"), B("t = s.upper()\nans = t == t[::-1]"))
        misses = (E("s == s[::-1]"), E("s.lower() == s[::-1]"))

    def typical(rng):
        half = "".join(rng.choice("abcAB") for _ in range(rng.randint(1, 4)))
        mid = rng.choice(["", "x", "Y"])
        t = half + mid + half[::-1]
        if rng.random() < 0.3:
            t = "".join(c.swapcase() if rng.random() < 0.3 else c for c in t)
        if rng.random() < 0.3:
            t = t + rng.choice("abc")
        return (t,)

    return Spec(domain=Text(MIXED, "English letters", 1, 20), task=task,
                fn_name=_pick(["is_palindrome", "palindrome"], p["w"]), output="bool",
                words=words, bodies=bodies, near_misses=misses, typical=typical,
                edges=(("a",), ("Aa",), ("abca",), ("abBA",), ("xyzzyx",)))


PALINDROME = Family("palindrome", "interview",
                    grid(op=("plain", "nocase"), words=(0, 1, 2), w=(0, 1)), _palindrome, 10, 2)


def _digits(p):
    op = p["op"]
    table = {
        "sum": (["the sum of the digits of n", "the digit sum of n"], "digit_sum",
                (E("sum(int(c) for c in str(abs(n)))"),
                 B("n = abs(n)\nans = 0\nwhile n > 0:\n    ans += n % 10\n    n //= 10")),
                (E("sum(int(c) for c in str(n))"), E("sum(int(c) for c in str(abs(n))[1:])"))),
        "count": (["the number of digits of n", "how many digits n has"], "count_digits",
                  (E("len(str(abs(n)))"), B("ans = 1\nn = abs(n)\nwhile n >= 10:\n    n //= 10\n    ans += 1")),
                  (E("len(str(n))"), B("ans = 0\nn = abs(n)\nwhile n > 0:\n    n //= 10\n    ans += 1"))),
        "max": (["the largest digit of n", "the maximum digit in the decimal notation of n"],
                "max_digit",
                (E("int(max(str(abs(n))))"), E("max(int(c) for c in str(abs(n)))")),
                (E("max(int(c) for c in str(n))"), E("int(str(abs(n))[0])"))),
        "last": (["the last digit of n", "the units digit of n"], "last_digit",
                 (E("abs(n) % 10"), E("int(str(n)[-1])")),
                 (E("n % 10"), E("n // 10 % 10"))),
    }
    tasks, fn, bodies, misses = table[op]
    return Spec(domain=Ints(-10**6, 10**6), task=_pick(tasks, p["w"]), fn_name=fn,
                bodies=bodies, near_misses=misses,
                note="The sign of n is ignored: n = -25 has the same digits as 25.",
                edges=((0,), (-4096,), (7,), (100500,), (-9,)))


DIGITS = Family("digits", "interview",
                grid(op=("sum", "count", "max", "last"), w=(0, 1)), _digits, 12, 2)


_TWO_STEP = {
    "add_mul": ("adding {a} to n and then multiplying the result by {b}",
                "(n + {a}) * {b}", "ans = n + {a}\nans *= {b}", "n + {a} * {b}"),
    "mul_add": ("multiplying n by {a} and then adding {b}",
                "n * {a} + {b}", "ans = n * {a}\nans += {b}", "n * ({a} + {b})"),
    "mul_sub": ("multiplying n by {a} and then subtracting {b}",
                "n * {a} - {b}", "ans = n * {a}\nans -= {b}", "n * ({a} - {b})"),
    "sub_mul": ("subtracting {a} from n and then multiplying the result by {b}",
                "(n - {a}) * {b}", "ans = n - {a}\nans *= {b}", "n - {a} * {b}"),
    "add_mod": ("adding {a} to n and then taking the remainder of the division by {b}",
                "(n + {a}) % {b}", "ans = n + {a}\nans %= {b}", "n + {a} % {b}"),
    "sq_add": ("squaring n, adding {a} and then multiplying the result by {b}",
               "(n * n + {a}) * {b}", "ans = n * n + {a}\nans *= {b}", "n * n + {a} * {b}"),
}


def _two_step(p):
    task, expr, block, wrong = _TWO_STEP[p["op"]]
    a, b = p["a"], p["b"]
    f = dict(a=a, b=b)
    note = ("The remainder is always between 0 and the divisor minus 1, even for negative numbers."
            if p["op"] == "add_mod" else "Intermediate results may be negative.")
    return Spec(domain=Ints(-100, 100), task=f"the number you get by {task.format(**f)}",
                fn_name=_pick(["compute", "calculate", "two_steps"], a),
                bodies=(E(expr.format(**f)), B(block.format(**f))),
                near_misses=(E(wrong.format(**f)),) + ((E(expr.format(a=b, b=a)),) if a != b else ()),
                note=note, edges=((0,), (-a,), (-37,), (1,)))


TWO_STEP = Family("two_step", "interview",
                  grid(op=tuple(_TWO_STEP), a=tuple(range(1, 16)), b=tuple(range(2, 12))),
                  _two_step, 14, 3)


_COUNTS = {
    "vowels": (["the number of vowels in s (the vowels are a, e, i, o, u, in either case)",
                "how many characters of s are vowels (a, e, i, o, u, uppercase or lowercase)"],
               "count_vowels",
               (E("sum(1 for c in s if c in 'aeiouAEIOU')"), E("sum(c in 'aeiou' for c in s.lower())")),
               (E("sum(1 for c in s if c in 'aeiou')"), E("sum(1 for c in s if c in 'aeiouyAEIOUY')"))),
    "upper": (["the number of uppercase letters in s", "how many characters of s are capital letters"],
              "count_upper",
              (E("sum(1 for c in s if c.isupper())"), E("sum(c.isupper() for c in s)")),
              (E("sum(1 for c in s if c == c.upper())"), E("sum(1 for c in s if c.islower())"))),
    "digits": (["the number of digits in s", "how many characters of s are decimal digits"],
               "count_digits",
               (E("sum(1 for c in s if c.isdigit())"), E("len([c for c in s if c in '0123456789'])")),
               (E("sum(1 for c in s if c.isalnum())"), E("sum(1 for c in s if c in '123456789')"))),
    "distinct": (["the number of different characters in s", "how many distinct characters s has"],
                 "count_distinct",
                 (E("len(set(s))"), B("seen = []\nfor c in s:\n    if c not in seen:\n        seen.append(c)\nans = len(seen)")),
                 (E("len(s)"), E("len(set(s.lower()))"))),
}


def _char_classes(p):
    tasks, fn, bodies, misses = _COUNTS[p["op"]]
    alphabet = "abeiouyAEIOUYxzXZ0129 "
    return Spec(domain=Text(alphabet.replace(" ", "") + " ", "English letters, digits and spaces",
                            0, 30), task=_pick(tasks, p["w"]), fn_name=fn, bodies=bodies,
                near_misses=misses,
                edges=(("",), ("AEIOU aeiou",), ("xyz 0",), ("Yy09Aa",), ("zzZZ",)))


CHAR_CLASSES = Family("char_classes", "interview",
                      grid(op=tuple(_COUNTS), w=(0, 1)), _char_classes, 10, 2)


def _fizzbuzz(p):
    a, b = p["a"], p["b"]
    w1, w2 = (("Fizz", "Buzz"), ("Foo", "Bar"), ("Ping", "Pong"))[p["words"]]
    return Spec(
        domain=Ints(1, 1000), fn_name="fizz_buzz", out_desc="the answer",
        task=(f'"{w1}{w2}" if n is divisible by both {a} and {b}, "{w1}" if n is divisible only by'
              f' {a}, "{w2}" if n is divisible only by {b}, and otherwise n itself written in'
              ' decimal (as a string)'),
        bodies=(B(f"if n % {a} == 0 and n % {b} == 0:\n    ans = '{w1}{w2}'\nelif n % {a} == 0:\n"
                  f"    ans = '{w1}'\nelif n % {b} == 0:\n    ans = '{w2}'\nelse:\n    ans = str(n)"),
                B(f"ans = ''\nif n % {a} == 0:\n    ans += '{w1}'\nif n % {b} == 0:\n"
                  f"    ans += '{w2}'\nif not ans:\n    ans = str(n)")),
        near_misses=(
            B(f"if n % {a} == 0:\n    ans = '{w1}'\nelif n % {b} == 0:\n    ans = '{w2}'\n"
              f"elif n % {a * b} == 0:\n    ans = '{w1}{w2}'\nelse:\n    ans = str(n)"),
            B(f"ans = ''\nif n % {b} == 0:\n    ans += '{w1}'\nif n % {a} == 0:\n"
              f"    ans += '{w2}'\nif not ans:\n    ans = str(n)")),
        edges=((a,), (b,), (a * b,), (1,), (a * b * 2,), (a * b + 1,)))


FIZZBUZZ = Family("fizzbuzz", "interview",
                  tuple(dict(a=a, b=b, words=w) for a in range(2, 8) for b in range(2, 8)
                        for w in range(3) if a != b and a % b and b % a),
                  _fizzbuzz, 10, 2)


def _running(p):
    op = p["op"]
    table = {
        "prefix": (["the prefix sums of a: the i-th number is a_1 + a_2 + ... + a_i",
                    "the running totals of a"], "prefix_sums",
                   (B("ans = []\ntotal = 0\nfor x in a:\n    total += x\n    ans.append(total)"),
                    B("import itertools\nans = list(itertools.accumulate(a))")),
                   (B("ans = []\ntotal = 0\nfor x in a:\n    ans.append(total)\n    total += x"),
                    E("[sum(a[:i]) for i in range(1, len(a))]"))),
        "diffs": (["the differences of neighbours: a_2 - a_1, a_3 - a_2, ..., a_n - a_(n-1)",
                   "the list of differences between each element and the previous one"],
                  "differences",
                  (E("[a[i + 1] - a[i] for i in range(len(a) - 1)]"), E("[y - x for x, y in zip(a, a[1:])]")),
                  (E("[a[i] - a[i + 1] for i in range(len(a) - 1)]"), E("[abs(y - x) for x, y in zip(a, a[1:])]"))),
        "runmax": (["the running maximum of a: the i-th number is max(a_1, ..., a_i)",
                    "for every position, the largest element seen so far"], "running_max",
                   (B("ans = []\nfor x in a:\n    ans.append(x if not ans else max(ans[-1], x))"),
                    E("[max(a[:i + 1]) for i in range(len(a))]")),
                   (B("ans = []\nbest = 0\nfor x in a:\n    best = max(best, x)\n    ans.append(best)"),
                    E("[max(a[i], a[i - 1]) for i in range(len(a))]"))),
    }
    tasks, fn, bodies, misses = table[op]
    return Spec(domain=IntList(1, 10, -20, 20), task=_pick(tasks, p["w"]), fn_name=fn,
                output="spaced", bodies=bodies, near_misses=misses,
                out_desc="the resulting numbers on one line, separated by spaces "
                         "(an empty line if there are none)",
                edges=(([4],), ([-3, -5, -1],), ([2, 2, 2],), ([1, -1, 4, 0, 7],)))


RUNNING = Family("running", "interview", grid(op=("prefix", "diffs", "runmax"), w=(0, 1)),
                 _running, 8, 2)

# ============================================================================ competition


def _gcd_lcm(p):
    if p["op"] == "gcd":
        return Spec(domain=Ints2(1, 1000), fn_name=_pick(["gcd", "greatest_divisor"], p["w"]),
                    task=_pick(["the greatest common divisor of a and b",
                                "the largest integer that divides both a and b"], p["w"]),
                    bodies=(B("import math\nans = math.gcd(a, b)"),
                            B("while b:\n    a, b = b, a % b\nans = a")),
                    near_misses=(E("min(a, b)"), B("while b:\n    a, b = b, a % b\nans = b")),
                    edges=((12, 18), (7, 13), (5, 5), (1, 1000), (100, 75)))
    return Spec(domain=Ints2(1, 300), fn_name=_pick(["lcm", "least_multiple"], p["w"]),
                task=_pick(["the least common multiple of a and b",
                            "the smallest positive integer divisible by both a and b"], p["w"]),
                bodies=(B("import math\nans = a * b // math.gcd(a, b)"),
                        B("ans = max(a, b)\nwhile ans % a or ans % b:\n    ans += 1")),
                near_misses=(E("a * b"), E("max(a, b)")),
                edges=((4, 6), (7, 13), (5, 5), (1, 300), (12, 18)))


GCD_LCM = Family("gcd_lcm", "competition", grid(op=("gcd", "lcm"), w=(0, 1)), _gcd_lcm, 7, 2)


def _primes(p):
    op = p["op"]
    if op == "isprime":
        return Spec(domain=Ints(-10, 500), fn_name="is_prime", output="bool",
                    words=WORD_PAIRS[p["words"]],
                    task=_pick(["n is a prime number", "n is prime (has exactly two positive divisors)"],
                               p["w"]),
                    note="Numbers smaller than 2 are not prime.",
                    bodies=(E("n > 1 and all(n % d for d in range(2, n))"),
                            B("ans = n >= 2\nd = 2\nwhile d * d <= n:\n    if n % d == 0:\n        ans = False\n    d += 1")),
                    near_misses=(E("all(n % d for d in range(2, n))"), E("n % 2 == 1")),
                    edges=((1,), (0,), (2,), (-7,), (91,), (97,), (9,)))
    if op == "count":
        return Spec(domain=Ints(0, 300), fn_name="count_primes",
                    task=_pick(["how many prime numbers are less than or equal to n",
                                "the number of primes p with 2 <= p <= n"], p["w"]),
                    bodies=(E("sum(1 for m in range(2, n + 1) if all(m % d for d in range(2, m)))"),
                            B("ans = 0\nfor m in range(2, n + 1):\n    if all(m % d for d in range(2, m)):\n        ans += 1")),
                    near_misses=(E("sum(1 for m in range(2, n) if all(m % d for d in range(2, m)))"),
                                 E("sum(1 for m in range(1, n + 1) if all(m % d for d in range(2, m)))")),
                    edges=((0,), (1,), (2,), (13,), (100,)))
    return Spec(domain=Ints(2, 2000), fn_name="smallest_factor",
                task=_pick(["the smallest divisor of n that is greater than 1",
                            "the smallest prime factor of n"], p["w"]),
                bodies=(E("next(d for d in range(2, n + 1) if n % d == 0)"),
                        B("ans = 2\nwhile n % ans:\n    ans += 1")),
                near_misses=(E("next((d for d in range(2, n) if n % d == 0), 1)"),
                             B("ans = 2\nwhile n % ans and ans * ans < n:\n    ans += 1")),
                edges=((2,), (97,), (91,), (1024,), (1999,), (49,)))


PRIMES = Family("primes", "competition",
                grid(op=("isprime",), words=(0, 1, 2), w=(0, 1))
                + grid(op=("count", "factor"), words=(0,), w=(0, 1)), _primes, 7, 2)


def _subarray(p):
    k = p["k"]
    if k == 0:
        return Spec(domain=IntList(1, 10, -20, 20), fn_name="max_subarray",
                    task="the largest possible sum of a non-empty block of consecutive elements of a",
                    bodies=(B("best = a[0]\ncur = 0\nfor x in a:\n    cur = max(x, cur + x)\n    best = max(best, cur)\nans = best"),
                            E("max(sum(a[i:j]) for i in range(len(a)) for j in range(i + 1, len(a) + 1))")),
                    near_misses=(B("best = 0\ncur = 0\nfor x in a:\n    cur = max(0, cur + x)\n    best = max(best, cur)\nans = best"),
                                 E("sum(a)"), E("max(a)")),
                    edges=(([-3, -1, -2],), ([5],), ([2, -1, 2],), ([1, -5, 4, -1, 3],)))
    return Spec(domain=IntList(k, 10, -20, 20), fn_name="best_window",
                task=f"the largest sum of {k} consecutive elements of a",
                bodies=(E(f"max(sum(a[i:i + {k}]) for i in range(len(a) - {k} + 1))"),
                        B(f"ans = sum(a[:{k}])\nfor i in range(1, len(a) - {k} + 1):\n    ans = max(ans, sum(a[i:i + {k}]))")),
                near_misses=(E(f"max(sum(a[i:i + {k}]) for i in range(len(a) - {k}))"),
                             E(f"sum(sorted(a)[-{k}:])"), E(f"max(sum(a[i:i + {k + 1}]) for i in range(len(a) - {k}))")),
                edges=(([-3] * k,), ([9] + [-1] * k + [2] * k,), ([1] * (k + 1) + [5] * k,),
                       ([4, -9] * k,)))


SUBARRAY = Family("subarray", "competition", grid(k=(0, 2, 3, 4)), _subarray, 6, 2)


def _pairs(p):
    op, k = p["op"], p["k"]
    if op == "sum":
        cond, words = f"a[i] + a[j] == {k}", f"a_i + a_j = {k}"
    elif op == "equal":
        cond, words = "a[i] == a[j]", "a_i = a_j"
    else:
        cond, words = f"(a[i] + a[j]) % {k} == 0", f"a_i + a_j is divisible by {k}"
    return Spec(domain=IntList(0, 10, -10, 10), fn_name="count_pairs",
                task=f"the number of pairs of positions (i, j) with i < j such that {words}",
                bodies=(E(f"sum(1 for i in range(len(a)) for j in range(i + 1, len(a)) if {cond})"),
                        B(f"ans = 0\nfor i in range(len(a)):\n    for j in range(i + 1, len(a)):\n        if {cond}:\n            ans += 1")),
                near_misses=(E(f"sum(1 for i in range(len(a)) for j in range(len(a)) if {cond})"),
                             E(f"sum(1 for i in range(len(a)) for j in range(i + 1, len(a) - 1) if {cond})"))
                # pairing an element with itself matters only if 2 * a_i can satisfy the condition
                + ((E(f"sum(1 for i in range(len(a)) for j in range(i, len(a)) if {cond})"),)
                   if op != "sum" or k % 2 == 0 else ()),
                edges=(([],), ([1],), ([2, 2, 2, 2],), ([k, 0, 0, k],), ([-1, 1, 3, -3, 5],))
                + ((([k // 2, 9, k // 2 - 1],),) if op == "sum" and k % 2 == 0 else ()))


PAIRS = Family("pairs", "competition",
               grid(op=("sum",), k=tuple(range(-4, 11))) + grid(op=("equal",), k=(0,))
               + grid(op=("div",), k=(2, 3, 4, 5)), _pairs, 7, 2)


def _rle(p):
    order, letters = p["order"], p["letters"]
    piece = "c + str(len(list(g)))" if order == "char" else "str(len(list(g))) + c"
    piece2 = "s[i] + str(j - i)" if order == "char" else "str(j - i) + s[i]"
    example = "a3b1c2" if order == "char" else "3a1b2c"
    example = example.translate(str.maketrans("abc", letters))
    x, y, z = letters
    return Spec(domain=Text(letters, f"the letters {x}, {y} and {z}", 0, 20), fn_name="encode",
                task=("the run-length encoding of s: every maximal block of equal letters is"
                      f" replaced by {'the letter followed by the block length' if order == 'char' else 'the block length followed by the letter'}"
                      f' (for example, "{x}{x}{x}{y}{z}{z}" becomes "{example}")'),
                out_desc="the encoded string",
                bodies=(B(f"import itertools\nans = ''.join({piece} for c, g in itertools.groupby(s))"),
                        B(f"ans = ''\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    ans += {piece2}\n    i = j")),
                near_misses=(E(f"''.join({piece.replace('len(list(g))', 's.count(c)')} for c in dict.fromkeys(s))"),
                             B(f"ans = ''\ni = 0\nwhile i < len(s) - 1:\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    ans += {piece2}\n    i = j")),
                edges=tuple((t.translate(str.maketrans("abc", letters)),)
                            for t in ("", "a", "abab", "ccccc", "aabccba")))


RLE = Family("rle", "competition", grid(order=("char", "count"), letters=("abc", "xyz", "pqr")),
             _rle, 5, 2)


def _second(p):
    d, which = p["d"], p["which"]
    sign = "-2" if which == "max" else "1"
    return Spec(domain=IntList(1, 10, -20, 20),
                fn_name="second_largest" if which == "max" else "second_smallest",
                task=f"the second {'largest' if which == 'max' else 'smallest'} distinct value in a",
                note=f"Equal values count once. If a has fewer than two distinct values, the answer is {d}.",
                bodies=(B(f"b = sorted(set(a))\nans = b[{sign}] if len(b) > 1 else {d}"),
                        B(f"b = sorted(set(a){', reverse=True' if which == 'max' else ''})\n"
                          f"ans = {d}\nif len(b) >= 2:\n    ans = b[1]")),
                near_misses=(B(f"b = sorted(a)\nans = b[{sign}] if len(b) > 1 else {d}"),
                             E(f"sorted(set(a))[{sign}]")),
                edges=(([5],), ([3, 3, 3],), ([1, 9, 9],), ([-4, -4, -2, 7, 7],), ([2, 1],)))


SECOND = Family("second", "competition", grid(which=("max", "min"), d=(-1, 0, 100, -100)),
                _second, 6, 2)


def _bits(p):
    op, k = p["op"], p["k"]
    table = {
        "popcount": ("the number of ones in the binary representation of n", "count_ones",
                     (E("bin(n).count('1')"), B("ans = 0\nwhile n:\n    ans += n & 1\n    n >>= 1")),
                     (E("len(bin(n)) - 2"), E("bin(n).count('0')"))),
        "binary": ("the binary representation of n without leading zeros, as a string", "to_binary",
                   (E("bin(n)[2:]"), E("format(n, 'b')")),
                   (E("bin(n)"), E("bin(n)[3:]"))),
        "xor": (f"n XOR {k} (bitwise exclusive or)", "xor_with",
                (E(f"n ^ {k}"),), (E(f"n | {k}"), E(f"n + {k}"))),
        "and": (f"n AND {k} (bitwise and)", "and_with",
                (E(f"n & {k}"),), (E(f"n | {k}"), E(f"n % {k}"))),
        "zeros": ("the number of trailing zeros in the binary representation of n (n >= 1)",
                  "trailing_zeros",
                  (E("len(bin(n)) - len(bin(n).rstrip('0'))"),
                   B("ans = 0\nwhile n % 2 == 0:\n    n //= 2\n    ans += 1")),
                  (E("bin(n).count('0') - 1"), E("n % 2"))),
    }
    task, fn, bodies, misses = table[op]
    lo = 1 if op == "zeros" else 0
    return Spec(domain=Ints(lo, 4096), task=task, fn_name=fn, out_desc="the answer",
                bodies=bodies, near_misses=misses,
                edges=((1,), (8,), (4095,), (4096,), (10,)) + (((0,),) if lo == 0 else ((96,),)))


BITS = Family("bits", "competition",
              tuple(dict(op=o, k=0) for o in ("popcount", "binary", "zeros"))
              + grid(op=("xor", "and"), k=(3, 5, 6, 7, 9, 10, 12, 15)), _bits, 8, 2)


def _frequent(p):
    op = p["op"]
    if op == "most":
        return Spec(domain=Text("abcde", "the letters a to e", 1, 20), fn_name="most_frequent",
                    task="the letter that occurs in s most often",
                    note="If several letters occur equally often, choose the one that comes first in the alphabet.",
                    out_desc="one letter",
                    bodies=(E("max(sorted(set(s)), key=s.count)"),
                            B("ans = ''\nfor c in sorted(set(s)):\n    if ans == '' or s.count(c) > s.count(ans):\n        ans = c")),
                    near_misses=(E("max(s, key=s.count)"), E("min(sorted(set(s)), key=s.count)")),
                    edges=(("e",), ("edcba",), ("bbaa",), ("cabbac",), ("aaaeeeed",)))
    return Spec(domain=Text("abcde", "the letters a to e", 0, 20), fn_name="first_unique",
                task="the first letter of s that occurs in s exactly once",
                note=f'If there is no such letter, the answer is "{p["d"]}".',
                out_desc="one letter or the word given above",
                bodies=(E(f"next((c for c in s if s.count(c) == 1), '{p['d']}')"),
                        B(f"ans = '{p['d']}'\nfor c in s:\n    if s.count(c) == 1:\n        ans = c\n        break")),
                near_misses=(E("next(c for c in s if s.count(c) == 1)"),
                             B(f"ans = '{p['d']}'\nfor c in s:\n    if s.count(c) == 1:\n        ans = c")),
                edges=(("",), ("aabb",), ("abcab",), ("e",), ("ddcecba",)))


FREQUENT = Family("frequent", "competition",
                  (dict(op="most", d=""),) + grid(op=("unique",), d=("none", "-", "NO")),
                  _frequent, 5, 2)


def _sequence(p):
    op, x, y = p["op"], p["x"], p["y"]
    if op == "fib":
        return Spec(domain=Ints(1, 40), fn_name="sequence",
                    task=(f"the n-th term of the sequence whose first two terms are {x} and {y}"
                          " and where every later term is the sum of the two before it"),
                    note="Terms are numbered from 1.",
                    bodies=(B(f"p, q = {x}, {y}\nfor _ in range(n - 1):\n    p, q = q, p + q\nans = p"),
                            B(f"t = [{x}, {y}]\nwhile len(t) < n:\n    t.append(t[-1] + t[-2])\nans = t[n - 1]")),
                    near_misses=(B(f"p, q = {x}, {y}\nfor _ in range(n):\n    p, q = q, p + q\nans = p"),)
                    + ((B(f"p, q = {y}, {x}\nfor _ in range(n - 1):\n    p, q = q, p + q\nans = p"),)
                       if x != y else (B(f"p, q = {x}, {y}\nfor _ in range(n - 1):\n    p, q = q, 2 * q\nans = p"),)),
                    edges=((1,), (2,), (3,), (10,), (40,)))
    return Spec(domain=Ints(1, 1000), fn_name="steps",
                task=(f"how many steps it takes to reach 1 from n, where in one step an even number"
                      f" is halved and an odd number m becomes {x} * m + {y}"),
                note="The answer for n = 1 is 0.",
                bodies=(B(f"ans = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else {x} * n + {y}\n    ans += 1"),),
                near_misses=(B(f"ans = 1\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else {x} * n + {y}\n    ans += 1"),
                             B(f"ans = 0\nwhile n > 2:\n    n = n // 2 if n % 2 == 0 else {x} * n + {y}\n    ans += 1")),
                edges=((1,), (2,), (3,), (27,), (64,)))


SEQUENCE = Family("sequence", "competition",
                  grid(op=("fib",), x=(0, 1, 2, 3), y=(1, 2, 3, 5))
                  + grid(op=("collatz",), x=(3, 1), y=(1,)),
                  _sequence, 6, 2)

# ================================================================ held-out harder variants


def _between(p):
    lo, hi = p["lo"], p["lo"] + p["width"]
    words = WORD_PAIRS[p["words"]]
    return Spec(domain=Ints(-100, 100), fn_name="in_range", output="bool", words=words,
                task=f"n is between {lo} and {hi}, inclusive (that is, {lo} <= n <= {hi})",
                bodies=(E(f"{lo} <= n <= {hi}"), E(f"n >= {lo} and n <= {hi}")),
                near_misses=(E(f"{lo} < n < {hi}"), E(f"n >= {lo}"), E(f"n <= {hi}")),
                edges=((lo,), (hi,), (lo - 1,), (hi + 1,), ((lo + hi) // 2,)))


BETWEEN = Family("between", "interview",
                 grid(lo=tuple(range(-20, 30, 3)), width=(5, 10, 17), words=(0, 1, 2)),
                 _between, 0, 3, heldout_only=True)


def _str_compose(p):
    op, k = p["op"], p["k"]
    table = {
        "rev_upper": ("s written backwards with every letter converted to uppercase",
                      (E("s[::-1].upper()"), E("s.upper()[::-1]")), (E("s.upper()"), E("s[::-1]"))),
        "rev_swap": ("s written backwards with the case of every letter swapped",
                     (E("s[::-1].swapcase()"),), (E("s.swapcase()"), E("s[::-1]"))),
        "prefix_upper": (f"the first {k} characters of s converted to uppercase (the whole string"
                         " if it is shorter)",
                         (E(f"s[:{k}].upper()"),), (E("s.upper()"), E(f"s[:{k}]"))),
    }
    task, bodies, misses = table[op]
    return Spec(domain=Text(MIXED, "English letters", 0, 15), task=task, fn_name="transform",
                out_desc="the resulting string", bodies=bodies, near_misses=misses,
                edges=(("",), ("aB",), ("HelloThere",)))


STR_COMPOSE = Family("str_compose", "interview",
                     grid(op=("rev_upper", "rev_swap"), k=(0,)) + grid(op=("prefix_upper",), k=(2, 3, 4)),
                     _str_compose, 0, 3, heldout_only=True)


def _filter_map(p):
    k, m = p["k"], p["m"]
    return Spec(domain=IntList(0, 10, -20, 20), fn_name="select_and_scale", output="spaced",
                task=f"the elements of a that are greater than {k}, each multiplied by {m},"
                     " in their original order",
                out_desc="the resulting numbers on one line, separated by spaces "
                         "(an empty line if there are none)",
                bodies=(E(f"[x * {m} for x in a if x > {k}]"),
                        B(f"ans = []\nfor x in a:\n    if x > {k}:\n        ans.append(x * {m})")),
                near_misses=(E(f"[x * {m} for x in a if x >= {k}]"), E(f"[x for x in a if x > {k}]"))
                # filtering after scaling differs only for a positive threshold
                + ((E(f"[x * {m} for x in a if x * {m} > {k}]"),) if k > 0 else ()),
                edges=(([],), ([k, k + 1],), ([-20, 20],), ([k - 1, k, k + 1, k + 2],)))


FILTER_MAP = Family("filter_map", "competition",
                    grid(k=tuple(range(-3, 8)), m=(2, 3, 4, 5)), _filter_map, 0, 3, heldout_only=True)


def _spread_empty(p):
    d = p["d"]
    return Spec(domain=IntList(0, 10, -50, 50), fn_name="spread",
                task="the difference between the largest and the smallest element of a",
                note=f"If a is empty, the answer is {d}.",
                bodies=(E(f"max(a) - min(a) if a else {d}"),
                        B(f"ans = {d}\nif a:\n    ans = max(a) - min(a)")),
                near_misses=(E("max(a) - min(a)"), E(f"max(a) - a[0] if a else {d}"))
                + ((E(f"max(a, default={d}) - min(a, default={d})"),) if d else ()),
                edges=(([],), ([4],), ([-5, -9],), ([3, -2, 8, -2],)))


SPREAD_EMPTY = Family("spread_empty", "interview", grid(d=(-1, 0, 1, 99)),  # the empty list
                      _spread_empty, 0, 3, heldout_only=True, formats=("call",))  # needs "call"

FAMILIES: tuple[Family, ...] = (
    INT_ARITH, INT_DIVMOD, TWO_INT_OP, STR_TRANSFORM, CHAR_COUNT, LIST_AGG, THRESHOLD,
    CLASSIFY, LOOP_SUM,
    LIST_FILTER, MAX_DEFAULT, LIST_MAP, WORDS, PALINDROME, DIGITS, TWO_STEP, CHAR_CLASSES,
    FIZZBUZZ, RUNNING,
    GCD_LCM, PRIMES, SUBARRAY, PAIRS, RLE, SECOND, BITS, FREQUENT, SEQUENCE,
    BETWEEN, STR_COMPOSE, FILTER_MAP, SPREAD_EMPTY,
)
