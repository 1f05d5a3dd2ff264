"""The judge cannot be stalled or crashed by what a program sends back, and MBPP test code sees
the judge's own modules.

Unit tests of `codec.decode`'s bounds on hand-made payloads, then programs run end to end (as
root: full isolation) that forge those payloads from inside the sandbox: each gets -1, the worker
survives (no restart) and the next program is judged normally.
"""
import json
import math
import os
import re

import numpy as np
import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution import codec
from coderl_jax.execution.pool import ExecutionPool

P = 2 ** 61 - 1  # ints k * P + 7 all hash to 7


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = {"T": [value]}
    return value


HOSTILE = {
    "too deep": _nested(codec.MAX_DEPTH + 10),
    "too many elements": [0] * (codec.MAX_ELEMENTS + 1),
    "many elements deep down": [[0] * 1000] * (codec.MAX_ELEMENTS // 1000 + 1),
    "huge int": {"I": "f" * (codec.MAX_HEX_DIGITS + 10)},
    "huge Fraction": {"Q": [{"I": "f" * (codec.MAX_HEX_DIGITS + 10)}, {"I": "3" * 8000}]},
    "Decimal huge exponent": {"M": "1e999999999"},
    "Decimal tiny exponent": {"M": "1e-999999999"},
    "Decimal too long": {"M": "1" * (codec.MAX_DECIMAL_CHARS + 1)},
    "numpy huge itemsize": {"N": ["U100000000", [1], ["a"]]},
    "numpy unsized dtype": {"N": ["U", [1], ["a" * 1000]]},
    "numpy object dtype": {"N": ["O", [1], [1]]},
    "numpy record dtype": {"N": ["i4,i4", [1], [1]]},
    "numpy bad dtype": {"N": ["no such type", [1], [1]]},
    "numpy shape mismatch": {"N": ["int64", [3], [1, 2]]},
    "numpy huge shape": {"N": ["float64", [10 ** 9], []]},
    "numpy too many bytes": {"N": ["U262144", [1000], ["a"] * 1000]},
    "numpy handle leaf": {"N": ["U5", [1], [{"H": 1}]]},
    "complex with a string": {"C": ["1", 1.0]},
    "huge range": {"R": [0, 10 ** 12, 1]},
    "colliding set": {"S": [k * P + 7 for k in range(1000)]},
    "colliding frozenset": {"F": [k * P + 7 for k in range(100)]},
    "colliding dict": {"D": [[k * P + 7, 0] for k in range(100)]},
    "colliding list": [k * P + 7 for k in range(100)],
    "colliding tuples": [{"T": [k * P + 7, "x"]} for k in range(100)],
    "colliding floats and ints": [float(2 ** 61 * 2 ** (61 * k)) for k in range(16)]
                                 + [1 + k * P for k in range(2, 31)],  # (1 + P is 2.0 ** 61)
    # complex numbers hash as hash(re) + 1000003 * hash(im): (T - 1000003 k) + 1000003 k = T
    "colliding complex in an array": {"N": ["complex128", [40], [
        {"C": [float(7 + 1000003 * (40 - k)), float(k)]} for k in range(40)]]},
}


def test_hostile_payloads_really_collide():
    complexes = [complex(*c["C"]) for c in HOSTILE["colliding complex in an array"]["N"][2]]
    assert len({hash(v) for v in complexes}) == 1
    mixed = HOSTILE["colliding floats and ints"]
    assert len({hash(v) for v in mixed}) == 1 and len(set(mixed)) == len(mixed)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_decode_bounds(name):
    with pytest.raises(codec.CodecError):
        codec.decode(json.loads(json.dumps(HOSTILE[name])))


def test_decode_accepts_honest_values_near_the_bounds():
    honest = [
        [0] * 100_000,  # repeated values share a hash but are not distinct
        [2 ** i for i in range(1900)],  # powers of two: at most 32 per hash value
        {k * P + 7 for k in range(codec.MAX_SHARED_HASH)},
        2 ** (codec.MAX_INT_BITS - 1),
        np.arange(12, dtype=np.int16).reshape(3, 4, 1),
        np.array(["ab", "c"]),
        np.zeros((0, 3)),
        1.5,
        __import__("decimal").Decimal("-1.25e-300"),
        __import__("fractions").Fraction(2 ** 1000 + 1, 3 ** 300),
        range(0, 10 ** 6, 7),
    ]
    for value in honest:
        back = codec.decode(json.loads(json.dumps(codec.encode(value))))
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape
            assert (back == value).all()
        else:
            assert back == value and type(back) is type(value)
    nans = codec.decode(json.loads(json.dumps(codec.encode([float("nan")] * 1000))))
    assert len(nans) == 1000 and all(math.isnan(x) for x in nans)  # NaNs hash by identity
    assert codec.decode(codec.encode(["x"] * 10, None), max_elements=11) == ["x"] * 10
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode(["x"] * 11, None), max_elements=11)


def test_check_hash_collisions_directly():
    codec.check_hash_collisions([k * P + 7 for k in range(codec.MAX_SHARED_HASH)] * 50)
    with pytest.raises(codec.CodecError):
        codec.check_hash_collisions([k * P + 7 for k in range(codec.MAX_SHARED_HASH + 1)])
    codec.check_hash_collisions([[1], (1, [2])] * 100)  # unhashable values are skipped


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------
CALL = Problem("c", "double", "call", Cases(inputs=([2], [5]), outputs=(4, 10), fn_name="f"))
ASSERT = Problem("m", "double", "assert", Cases(asserts=("assert f(2) == 4", "assert f(5) == 10")))
SIZE = Problem("z", "size", "assert", Cases(asserts=(
    "assert tuple_size((1, 2)) == sys.getsizeof((1, 2))",)))
NUMPY = Problem("n", "arange", "assert", Cases(asserts=("assert np.array_equal(f(3), [0, 1, 2])",)))
CALLED = Problem("k", "named like a module", "assert", Cases(asserts=("assert string(3) == '3'",)))
LOOP = Problem("l", "loop", "assert", Cases(asserts=("assert sum(1 for _ in range(f(1))) == 3",)))
BROKEN = Problem("b", "one output short", "call", Cases(inputs=([1], [2]), outputs=(2,),
                                                         fn_name="f"))
PROBLEMS = {p.problem_id: p for p in (CALL, ASSERT, SIZE, NUMPY, CALLED, LOOP, BROKEN)}
GOOD = {"c": "def f(x):\n    return 2 * x\n", "m": "def f(x):\n    return 2 * x\n"}

# The sandbox's encoder is replaced, so every non-callable value the program hands back (a call's
# result, an assert-format return value) is sent as PAYLOAD; functions stay handles.
FORGE = ("import json, sys\n"
         "_codec = sys.modules['coderl_jax.execution.codec']\n"
         "_orig = _codec.encode\n"
         "PAYLOAD = json.loads({payload!r})\n"
         "_codec.encode = lambda v, h=None, _depth=0: _orig(v, h) if callable(v) else PAYLOAD\n"
         "def f(x):\n    return 0\n")

E2E = ["too deep", "too many elements", "huge int", "huge Fraction", "Decimal huge exponent",
       "numpy huge itemsize", "numpy shape mismatch", "numpy bad dtype", "colliding set",
       "colliding list"]


@pytest.fixture(scope="module")
def pool():
    if os.geteuid() != 0:
        pytest.skip("the full sandbox needs root (as in CI)")
    with ExecutionPool(workers=1, timeout=1.0) as p:
        p.config["judge_cpu_s"] = 1.0  # read when the worker starts (below): a quick judge timeout
        assert p.run_one(CALL, GOOD["c"])["result"] == 1
        yield p


_serial = iter(range(10 ** 9))


def judge(pool, pid, code):
    """Run a hostile program then a good one (never cached); return the hostile result after
    checking that the worker survived without a restart."""
    worker = pool._workers[0].proc.pid
    restarts = pool.restarts
    good_pid = pid if pid in GOOD else "m"
    hostile, good = pool.run(PROBLEMS, [
        {"problem_id": pid, "code": code},
        {"problem_id": good_pid, "code": GOOD[good_pid] + f"# {next(_serial)}\n"}])
    assert good["result"] == 1, good
    assert pool._workers[0].proc.pid == worker and pool.restarts == restarts
    return hostile


@pytest.mark.parametrize("fmt", ["c", "m"])
@pytest.mark.parametrize("name", E2E)
def test_forged_replies_are_runtime_errors(pool, fmt, name):
    r = judge(pool, fmt, FORGE.format(payload=json.dumps(HOSTILE[name])))
    assert (r["result"], r["error_type"]) == (-1, "protocolerror"), r


def test_forged_module_global_is_a_runtime_error(pool):
    """An undecodable value among the load reply's names (the assert format's first reply)."""
    code = FORGE.replace("if callable(v) else PAYLOAD", "if v is not g else PAYLOAD") + "g = 1\n"
    problem = Problem("g", "uses g", "assert", Cases(asserts=("assert f(g) == 0",)))
    code = code.format(payload=json.dumps(HOSTILE["colliding list"]))
    r = pool.run_one(problem, code)
    assert (r["result"], r["error_type"]) == (-1, "protocolerror"), r


def test_frame_too_deep_for_json(pool):
    code = ("import os, struct, time\ndef f(x):\n    d = b'[' * 200000 + b']' * 200000\n"
            "    os.write(3, struct.pack('>I', len(d)) + d)\n    time.sleep(10)\n")
    for fmt in ("c", "m"):
        r = judge(pool, fmt, code)
        assert (r["result"], r["error_type"]) == (-1, "protocolerror"), r


def test_slow_judge_side_work_is_cut(pool):
    assert pool.run_one(LOOP, "def f(x):\n    return 3")["result"] == 1
    r = judge(pool, "l", "def f(x):\n    return 10 ** 12")
    assert (r["result"], r["error_type"]) == (-1, "judgetimeout"), r


def test_judge_failures_are_not_cached_and_the_worker_keeps_serving(pool):
    code = "def f(x):\n    return 2"
    for _ in range(2):
        misses = pool.cache_misses
        r = judge(pool, "b", code)
        assert (r["result"], r["error_type"]) == (-1, "judgeerror"), r
        assert pool.cache_misses == misses + 2  # judged again, not served from the cache


def test_worker_address_space_is_capped(pool):
    with open(f"/proc/{pool._workers[0].proc.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max address space"))
    assert re.split(r"\s{2,}", line.strip())[1] != "unlimited"


@pytest.mark.parametrize("code", [
    ("class Fake:\n    def getsizeof(self, x):\n        return 0\nsys = Fake()\n"
     "def tuple_size(t):\n    return 0"),
    ("import types\nsys = types.SimpleNamespace(getsizeof=lambda x: 0)\n"
     "def tuple_size(t):\n    return 0"),
    "def sys():\n    pass\nsys.getsizeof = lambda x: 0\ndef tuple_size(t):\n    return 0",
])
def test_rebound_module_names_are_the_judges(pool, code):
    r = judge(pool, "z", code)
    assert r["result"] in (0, -1), r
    assert pool.run_one(SIZE, "import sys\ndef tuple_size(t):\n    return sys.getsizeof(t)"
                        )["result"] == 1


def test_numpy_alias_is_the_judges(pool):
    fake = "class N:\n    def array_equal(self, a, b):\n        return True\nnp = N()\n"
    assert judge(pool, "n", fake + "def f(n):\n    return None")["result"] in (0, -1)
    assert pool.run_one(NUMPY, "import numpy as np\ndef f(n):\n    return np.arange(n)"
                        )["result"] == 1


def test_function_named_like_a_module_is_the_programs(pool):
    assert pool.run_one(CALLED, "def string(x):\n    return str(x)")["result"] == 1


def test_judge_timeout_waits_for_fork_server_plumbing():
    """The CPU timer going off inside a spawn (or kill) is raised only once it has returned, and
    the sandbox it made is still ended: the fork server's protocol never stops halfway."""
    import time

    from coderl_jax.execution.checkers import JudgeTimeout, ProgramRun

    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    class FakeSandbox:
        killed = 0

        def kill(self, wait=True):  # noqa: ARG002 (Sandbox.kill's signature)
            burn(0.2)  # shielded too: a slow kill still completes
            FakeSandbox.killed += 1
            return 0

    def spawn():
        burn(0.3)
        return FakeSandbox()

    spec = {"format": "call", "tests": {"inputs": [[1]], "outputs": [1], "fn_name": "f"}}
    run = ProgramRun(spec, "", spawn, timeout=1.0, wall_timeout=1.0, judge_cpu=0.1)
    with pytest.raises(JudgeTimeout):
        run.run()
    assert FakeSandbox.killed == 1 and run.sandbox is None


def _pairs_with_one_tuple_hash(n: int) -> list[list[int]]:
    """n distinct [a, b] whose tuples all hash like (0, 0), while every a and b has a hash of its
    own: CPython's tuple hash (xxHash-style) is invertible in its last lane."""
    m = 1 << 64
    p1, p2, p5 = 11400714785074694791, 14029467366897019727, 2870177450012600261

    def lane(x):
        return (((x << 31) | (x >> 33)) % m * p1) % m

    def first(a):
        return lane((p5 + (hash(a) % m) * p2) % m)

    target = first(0)  # + hash(0) * p2
    inv = pow(p2, -1, m)
    out = []
    for a in range(1, 100 * n):
        hb = ((target - first(a)) * inv) % m
        if hb < (1 << 61) - 1:
            b = hb
        elif hb > m - (1 << 61) + 1 and hb != m - 1:
            b = hb - m
        else:
            continue
        out.append([a, b])
        if len(out) == n:
            break
    return out


def test_lists_that_would_collide_as_tuples_are_refused():
    """`set(map(tuple, f(x)))` in test code hashes each returned list as a tuple: pairs chosen so
    that their tuples share one hash (each number's own hash distinct) are refused."""
    from coderl_jax.execution import codec

    pairs = _pairs_with_one_tuple_hash(100)
    assert len(pairs) == 100 and len({hash(tuple(p)) for p in pairs}) == 1
    assert len({hash(x) for p in pairs for x in p}) == 200
    with pytest.raises(codec.CodecError):
        codec.decode(pairs)
    codec.decode([[a, b] for a in range(20) for b in range(20)])  # honest pairs pass


def test_forged_stdin_output_beyond_the_cap_fails():
    """Harness 'coderl' sends stdout back in the reply: a program writing its own reply on fd 3
    with more output than the cap (or 5M lines for the comparison to chew on) fails the test."""
    from coderl_jax.data.records import Problem, Tests
    from coderl_jax.execution.pool import ExecutionPool
    from coderl_jax.execution.sandbox import Limits

    problem = Problem("s", "echo", "stdin", Tests(inputs=("1\n",), outputs=("1\n",)))
    forge = ("import os, json, struct\n"
             "d = json.dumps({'out': '1\\n' * 300000, 'trunc': False, 'exc': None}).encode()\n"
             "os.write(3, struct.pack('>I', len(d)) + d)\n"
             "import time\ntime.sleep(5)\n")
    with ExecutionPool(workers=1, timeout=2.0, harness="coderl",
                       limits=Limits(output_cap=1 << 16)) as pool:
        r = pool.run_one(problem, forge)
        assert (r["result"], r["error_type"]) == (0, "failed unit tests"), r
        assert pool.run_one(problem, "print(input())")["result"] == 1
