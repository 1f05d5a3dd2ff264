"""Issue 17 point 9's call-based cases CodeRL itself could not label, under both harnesses
(checkers.py docstring): a program without the function the problem names, and SystemExit while
the module loads. CodeRL's `getattr(tmp, method_name)` raised out of run_test (test_one_solution.py
recorded no result and stopped testing that problem's programs) and its SystemExit escaped every
`except Exception` (ending the whole run); here both get labels that rank them below passing:
-1 "attributeerror", and a failed test (status 0) or -1 "systemexit". Module-level
`from sys import stdin` is in test_execution_stdio.py."""
import pytest

from coderl_jax.data.records import Problem, Tests as Cases
from coderl_jax.execution.pool import ExecutionPool

ADD = Problem("c", "add", "call", Cases(inputs=([1, 2],), outputs=(3,), fn_name="add"))
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module", params=["real", "coderl"])
def pool(request):
    with ExecutionPool(workers=1, timeout=2.0, harness=request.param) as p:
        yield p


@pytest.mark.parametrize("code, expected", [
    (GOOD, (1, "passed unit tests")),
    ("def plus(a, b):\n    return a + b\n", (-1, "attributeerror")),
    ("add = 3\n", (-1, "attributeerror")),  # the name exists but is no function
    ("import sys\nsys.exit(0)\n" + GOOD, (0, "failed unit tests")),
    ("import sys\nsys.exit(3)\n" + GOOD, (-1, "systemexit")),
    ("raise SystemExit('bye')\n" + GOOD, (-1, "systemexit")),
])
def test_call_based_cases_coderl_could_not_label(pool, code, expected):
    r = pool.run({"c": ADD}, [{"problem_id": "c", "code": code}])[0]
    assert (r["result"], r["error_type"]) == expected, r
