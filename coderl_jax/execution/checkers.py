"""The judge: runs one program's tests through a sandbox and decides outcomes (SPEC §4).

Runs in the worker process, never in the sandbox; expected outputs and test code stay here.

Formats (see `coderl_jax.data.records`):
  * stdin  – APPS standard input: the sandbox runs the program on each input and returns stdout;
             compared with CodeRL's rules (`apps_stdin_match`).
  * call   – APPS call-based: the sandbox calls `fn_name` with the arguments and returns the value
             (typed JSON); compared with CodeRL's rules (`apps_call_match`).
  * assert – MBPP / HumanEval: the test code (`setup_code`, then each line of `asserts`) is executed
             *here*, in a namespace where the program's globals are proxies: calling one runs it in
             the sandbox and brings back a plain value. So `==`, `abs`, `math.isclose`... are the
             judge's own, unpatched builtins, comparing genuine builtin values: a program cannot
             pass by monkeypatching builtins or by returning an object whose `__eq__` is always
             true (such an object stays in the sandbox; its proxy equals nothing). Program
             objects that are not plain data (class instances, functions) stay in the sandbox as
             handles; their proxies support calls, attributes, iteration, len, indexing, `in`.

Standard-input programs are judged by one of two harnesses (`harness`, details in runtime.py):
  * "real" (default): each test runs the program as a process in a fresh sandbox, as contest
    judges do: stdin is a sealed memfd holding the input, stdout a memfd read back here (at
    most `output_cap` bytes: more, or death by SIGXFSZ, is a failed test). A syntax error is -2
    (and an exception raised by a leading import line, CodeRL's load phase); an uncaught
    exception is -1 with its type; otherwise a non-zero exit status is -1 "systemexit" and death
    by a signal -1 with the signal's name; exit status 0 compares the output, including output
    written before `os._exit(0)`.
  * "coderl": CodeRL's in-process harness reproduced (one sandbox per program, `code()` called
    per test; `SystemExit` ends a test normally; output before `os._exit` is lost).
  Cases CodeRL itself could not label, the same in both harnesses: a program without the
  function (`fn_name`, or `code` for a standard-input program made only of imports) is -1
  "attributeerror" (CodeRL's `getattr` raised out of run_test and test_one_solution.py recorded
  no result for it); `SystemExit` while the module loads ends the process: status 0 is a failed
  test, else -1 "systemexit" (CodeRL's SystemExit escaped its `except Exception` and ended the
  whole evaluation). Time limits are CPU seconds of the program's process tree per test (plus a
  wall-clock limit), where CodeRL used a 4 s wall-clock `signal.alarm` per test: a program that
  sleeps or waits is limited by the wall-clock limit here instead.

The judge's own work is bounded, since what the sandbox sends back is written by the program:
replies are decoded under `codec.decode`'s bounds (size, nesting, int / Decimal / numpy sizes, hash
multiplicity), and any decoding failure, on any path (load reply, call result, proxy operation,
a frame too deeply nested for json), is a -1 "protocolerror"; with `judge_cpu`, a SIGPROF timer
on the judge's own CPU time stops a program's judging (JudgeTimeout; the worker reports -1
"judgetimeout"). A Python timer cannot cut one long C call, which is why the decode bounds keep
every single C-level operation on a decoded value (building a set, `int()`, `np.array`) short.
In the assert format, a name of a judge module (JUDGE_MODULES, `np`) is the judge's module even
if the program rebound it (`sys = Fake()`), unless the test code calls that name.

Outcomes: -2 the program does not load (syntax error, or any exception / timeout / crash while
executing its module, as in CodeRL where module-level failures are compile errors; for harness
"real" standard-input programs: a syntax error or a failing leading import line), -1 runtime
error (exception, timeout -> "timeoutexception", killed by a signal -> "sigsegv"..., exited with a
non-zero status -> "systemexit"), 0 a test failed (including output too large or an exit with
status 0 before answering), 1 all tests passed. A program's result is that of its first test that
did not pass. A program lacking the function a call-based problem names gets -1
("attributeerror").
"""
from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import fcntl
import importlib
import os
import select
import signal
import time

from coderl_jax.execution import codec
from coderl_jax.execution.sandbox import OutputLimit, SandboxDied, SandboxTimeout

COMPILE_ERROR, RUNTIME_ERROR, FAILED, PASSED = -2, -1, 0, 1
# Wall-clock slack per CPU second used: an honest program on a host loaded 3x still finishes.
WALL_PER_CPU = 2.0
PASSED_TYPE, FAILED_TYPE, TIMEOUT_TYPE = ("passed unit tests", "failed unit tests",
                                          "timeoutexception")

# Modules a program global may stand for in the judge's namespace (imported here, not trusted
# from the sandbox).
JUDGE_MODULES = frozenset({
    "array", "bisect", "calendar", "cmath", "collections", "copy", "datetime", "decimal",
    "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numpy",
    "operator", "random", "re", "statistics", "string", "struct", "sys", "textwrap", "time",
    "typing", "unicodedata"})
# Usual aliases of those modules in test code (`np.allclose(...)`).
MODULE_ALIASES = {"np": "numpy"}


# ------------------------------------------------------------------------------------------------
# APPS comparison rules (CodeRL utils/testing_util.py)
# ------------------------------------------------------------------------------------------------
def apps_stdin_match(text: str, expected) -> bool:
    """Whether captured stdout passes an APPS standard-input test, by CodeRL's sequence of checks:
    exact after stripping (whole text, or each line), line lists, non-empty stripped lines, floats
    with numpy.allclose, and finally unordered sets of whitespace-split tokens per line (also with
    numbers rounded to 3 decimals)."""
    if isinstance(expected, list):
        expected = "\n".join(str(x) for x in expected)
    expected = str(expected)
    output = text.splitlines()  # CodeRL captures stdout as a list of lines
    gt = expected.strip()
    if "\n".join(output).strip() == gt or "\n".join(o.strip() for o in output).strip() == gt:
        return True
    if output == [expected]:
        return True
    exp_lines = [x.strip() for x in expected.split("\n") if len(x)]
    if output == exp_lines:
        return True
    output = [o for o in output if len(o)]
    if output == exp_lines:
        return True
    try:
        import numpy as np

        out_f = [float(e) for e in output]
        gt_f = [float(e) for e in exp_lines]
        if len(out_f) == len(gt_f) and bool(np.allclose(out_f, gt_f)):
            return True
    except (ValueError, TypeError, OverflowError):
        pass
    # CodeRL compares sets of per-line token sets; built as sets directly, memory grows with the
    # distinct lines only (a forged reply of millions of equal lines stays small)
    exp_sets = {frozenset(x.split()) for x in exp_lines}
    out_sets = {frozenset(toks) for toks in (o.split() for o in output) if len(toks)}
    if out_sets == exp_sets:
        return True
    try:
        rounded = ({frozenset(round(float(t), 3) for t in s) for s in out_sets}
                   == {frozenset(round(float(t), 3) for t in s) for s in exp_sets})
        return bool(rounded)
    except (ValueError, TypeError, OverflowError):
        return False


def apps_call_match(output, expected) -> bool:
    """Whether a call-based return value passes (CodeRL): tuples count as lists, and a list
    expected value also matches its first element (APPS stores some outputs wrapped)."""
    if isinstance(output, tuple):
        output = list(output)
    ok = output == expected
    if isinstance(expected, list) and expected:
        ok = ok or (output == expected[0])
    try:
        if isinstance(output[0], tuple):
            ok = ok or ([list(x) for x in output] == expected[0])
    except Exception:  # noqa: BLE001 - CodeRL ignores any failure of this check
        pass
    return bool(ok)


def apps_call_args(inputs, expected):
    """CodeRL's fix-ups of JSON-decoded call tests: dicts get int keys where possible."""
    try:
        if isinstance(inputs[0], dict):
            inputs = [{int(k): v for k, v in inputs[0].items()}]
    except Exception:  # noqa: BLE001
        pass
    try:
        if isinstance(expected, dict):
            expected = [{int(k): v for k, v in expected.items()}]
    except Exception:  # noqa: BLE001
        pass
    try:
        if isinstance(expected[0], dict):
            expected = [{int(k): v for k, v in expected[0].items()}]
    except Exception:  # noqa: BLE001
        pass
    return inputs, expected


# ------------------------------------------------------------------------------------------------
# Proxies for program objects in the judge's namespace (assert format)
# ------------------------------------------------------------------------------------------------
class RemoteError(Exception):
    """The program raised while the judge was using one of its objects."""

    def __init__(self, info: dict):
        super().__init__(info.get("msg", ""))
        self.info = info


class Remote:
    """A program object that lives in the sandbox; equal only to itself."""

    __slots__ = ("_conn", "_ref")

    def __init__(self, conn, ref: int):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_ref", ref)

    def _rpc(self, op: str, **kw):
        return self._conn.rpc({"op": op, "ref": self._ref, **kw})

    def __call__(self, *args, **kwargs):
        return self._rpc("rcall", args=self._conn.enc(list(args)),
                         kw=self._conn.enc(dict(kwargs)))

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._rpc("getattr", attr=name)

    def __setattr__(self, name: str, value) -> None:
        self._rpc("setattr", attr=name, value=self._conn.enc(value))

    def __iter__(self):
        return iter(self._rpc("iter"))

    def __len__(self) -> int:
        n = self._rpc("len")
        if type(n) is not int:
            raise TypeError("len() of a program object is not an int")
        return n

    def __bool__(self) -> bool:
        return self._rpc("bool") is True

    def __getitem__(self, key):
        return self._rpc("getitem", key=self._conn.enc(key))

    def __contains__(self, item) -> bool:
        return self._rpc("contains", item=self._conn.enc(item)) is True

    def __str__(self) -> str:
        s = self._rpc("str")
        return s if type(s) is str else "<program object>"

    def __repr__(self) -> str:
        s = self._rpc("repr")
        return s if type(s) is str else "<program object>"

    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


def referenced_names(test_code: str) -> list[str]:
    """Names the test code may need from the program: every identifier it uses that is neither a
    builtin nor bound at the test code's top level."""
    tree = ast.parse(test_code)
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    top_stored = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    top_stored.add(n.id)
    return sorted(used - bound - top_stored - set(dir(builtins)))


def subject_names(asserts) -> set[str]:
    """The function each assert line tests: `f` in `assert f(...) == x` / `assert f(...)`, and
    `g` in `check(g)`. These may shadow builtins (MBPP task 126 defines `sum`), unless the call's
    arguments themselves call the program (`abs(g(2) - 1.5) < 1e-6`: `abs` only wraps `g`). Any
    other builtin name in the test code stays the judge's own, whatever the program defines."""
    builtin_names = set(dir(builtins))

    def calls_program(node) -> bool:
        return any(isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name)
                                                     and n.func.id in builtin_names)
                   for a in [*node.args, *(k.value for k in node.keywords)]
                   for n in ast.walk(a))

    out = set()
    for line in asserts:
        try:
            tree = ast.parse(line)
        except SyntaxError:
            continue
        for stmt in tree.body:
            expr = stmt.test if isinstance(stmt, ast.Assert) else getattr(stmt, "value", None)
            if isinstance(expr, ast.Compare):
                expr = expr.left
            if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
                name = expr.func.id
                if name not in builtin_names or not calls_program(expr):
                    out.add(name)
                if not isinstance(stmt, ast.Assert):  # check(candidate)
                    out.update(a.id for a in expr.args if isinstance(a, ast.Name))
    return out


# ------------------------------------------------------------------------------------------------
# Driving one program
# ------------------------------------------------------------------------------------------------
class JudgeTimeout(BaseException):
    """The judge's CPU budget for one program ran out (not an Exception: test code's
    `except Exception` must not swallow it)."""


class _JudgeClock:
    """A one-shot ITIMER_PROF timer (the worker's own CPU time) that raises JudgeTimeout in the
    main thread. `shield()` defers it past sandbox plumbing that must not stop halfway (a spawn
    or kill cut between its request and its answer would desynchronise the fork server)."""

    def __init__(self):
        self.active = self.owed = False
        self.shields = 0

    def start(self, seconds: float) -> None:
        self.owed, self.shields, self.active = False, 0, True
        signal.signal(signal.SIGPROF, self._fire)
        signal.setitimer(signal.ITIMER_PROF, seconds)

    def stop(self) -> None:
        self.active = self.owed = False
        signal.setitimer(signal.ITIMER_PROF, 0)

    def _fire(self, signum, frame) -> None:  # noqa: ARG002 (a signal handler's signature)
        if not self.active:
            return
        if self.shields:
            self.owed = True
            return
        self.active = False
        raise JudgeTimeout("judge CPU time limit exceeded")

    @contextlib.contextmanager
    def shield(self):
        self.shields += 1
        try:
            yield
        finally:
            self.shields -= 1
        if self.owed and not self.shields:
            self.owed = self.active = False
            raise JudgeTimeout("judge CPU time limit exceeded")


_CLOCK = _JudgeClock()


class _Outcome(Exception):
    """Ends a test with a code (raised from deep inside test execution)."""

    def __init__(self, code: int, etype: str, msg: str = "", line: int | None = None):
        super().__init__(msg)
        self.code, self.etype, self.msg, self.line = code, etype, msg, line


def _died(status: int) -> _Outcome:
    if status == 0:
        return _Outcome(FAILED, FAILED_TYPE, "the program exited before answering")
    if status > 0:
        return _Outcome(RUNTIME_ERROR, "systemexit", f"SystemExit: exit status {status}")
    sig = -status
    if sig == signal.SIGXCPU:
        return _Outcome(RUNTIME_ERROR, TIMEOUT_TYPE, "CPU time limit exceeded")
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal{sig}"
    return _Outcome(RUNTIME_ERROR, name.lower(), f"killed by {name}")


HARNESSES = ("real", "coderl")


def check_harness(harness) -> str:
    if harness not in HARNESSES:
        raise ValueError(f"harness must be 'real' or 'coderl', not {harness!r}")
    return harness


def _input_memfd(data: bytes) -> int:
    """A read-only fd on a sealed memfd holding `data` (a test's standard input)."""
    fd = os.memfd_create("coderl-stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


_COMPILED: dict = {}  # (test source, name) -> code object


class ProgramRun:
    """One program against one problem's tests, through sandboxes from `spawn(stdio=None)`."""

    def __init__(self, spec: dict, code: str, spawn, *, timeout: float, wall_timeout: float,
                 stop_at_first_failure: bool = True, harness: str = "real",
                 output_cap: int = 1 << 22, judge_cpu: float | None = None):
        """`judge_cpu`: CPU seconds the judge itself may spend on this program (decoding replies,
        comparing, running test code); past it, run() raises JudgeTimeout. Needs the main
        thread (a SIGPROF timer); None: unbounded."""
        self.harness = check_harness(harness)
        self.output_cap = output_cap
        self.spec, self.code = spec, code
        self.spawn = lambda stdio=None: self._spawn(spawn, stdio)
        self.judge_cpu = judge_cpu
        self._called: set[str] | None = None
        self.phases = collections.defaultdict(float)  # wall seconds by phase (see run)
        self.timeout, self.wall_timeout = timeout, wall_timeout
        self.stop = stop_at_first_failure
        self.fmt = spec["format"]
        self.tests = spec["tests"]
        self.per_test = self.fmt == "stdin" and harness == "real"  # a process per test
        self.sandbox = None
        self.ns: dict | None = None
        self._cpu0: float | None = None
        self._deadline = 0.0
        self._wall_start: float | None = None
        self._cpu_spent = 0.0  # CPU seconds of the tests before the current one
        self._budget_box = None  # the sandbox the current budget's CPU is read from

    # -- sandbox plumbing --------------------------------------------------------------------------
    def _begin_budget(self) -> None:
        """A new CPU budget (one test's); the wall budget is the program's: `wall_timeout`
        seconds plus WALL_PER_CPU per CPU second it has used, over all its tests."""
        if self._cpu0 is not None and self._budget_box is not None:  # the last budget's use
            self._cpu_spent += max(self._budget_box.cpu() - self._cpu0, 0.0)
        self._cpu0 = self.sandbox.start_budget()
        self._budget_box = self.sandbox  # standard-input tests each have their own
        if self._wall_start is None:
            self._wall_start = time.monotonic()
        self._deadline = self._wall_start + self.wall_timeout + WALL_PER_CPU * self._cpu_spent

    def rpc(self, req: dict):
        """Send a request and return the decoded value of the reply (assert format)."""
        reply = self._request(req)
        if reply.get("exc"):
            raise RemoteError(reply["exc"])
        try:
            return codec.decode(reply.get("v"), lambda h: Remote(self, h))
        except codec.CodecError as e:
            raise _Outcome(RUNTIME_ERROR, "protocolerror", f"invalid reply: {e}"[:500]) from None

    def enc(self, value):
        def handle(obj):
            if type(obj) is Remote:
                return obj._ref
            raise TypeError(f"cannot pass a {type(obj).__name__} to the program")

        return codec.encode(value, handle)

    def _request(self, req: dict, phase: str = "replies") -> dict:
        t = time.perf_counter()
        self.sandbox.send(req)
        try:
            reply = self.sandbox.recv(self._cpu0, self.timeout, self._deadline, WALL_PER_CPU)
        except RecursionError:  # a frame nested too deeply for json.loads
            self._end_sandbox()
            raise _Outcome(RUNTIME_ERROR, "protocolerror", "invalid reply: nested too deeply")
        finally:
            self.phases[phase] += time.perf_counter() - t
        exc = reply.get("exc")
        if exc is not None and not isinstance(exc, dict):
            raise SandboxDied("invalid reply")
        return reply

    def _compile(self, source: str, name: str):
        """Test code compiled once per worker (every program of a problem runs the same asserts)."""
        t = time.perf_counter()
        key = (source, name)
        code = _COMPILED.get(key)
        if code is None:
            if len(_COMPILED) > 20000:
                _COMPILED.clear()
            code = _COMPILED[key] = compile(source, name, "exec")
        self.phases["compile"] += time.perf_counter() - t
        return code

    def _end_sandbox(self, wait: bool = False) -> int | None:
        """Kill the sandbox; with `wait`, return how it ended (exit code or minus the signal)."""
        t = time.perf_counter()
        sb = self.sandbox
        status = self._shielded(lambda: sb.kill(wait)) if sb else 0
        self.sandbox, self.ns = None, None
        self.phases["end"] += time.perf_counter() - t
        return status

    @staticmethod
    def _shielded(fn):
        with _CLOCK.shield():
            return fn()

    def _spawn(self, spawn, stdio=None):
        t = time.perf_counter()
        with _CLOCK.shield():  # kept even if the timeout is raised on leaving: run() ends it
            self.sandbox = spawn(stdio) if stdio else spawn()
        self.phases["spawn"] += time.perf_counter() - t
        return self.sandbox

    def _guard(self, fn, died: bool = True):
        """Run fn(); sandbox failures become outcomes (and end the sandbox); with died=False
        SandboxDied is left to the caller."""
        try:
            return fn()
        except SandboxTimeout:
            self._end_sandbox()
            raise _Outcome(RUNTIME_ERROR, TIMEOUT_TYPE, "TimeoutException: time limit exceeded")
        except OutputLimit:
            self._end_sandbox()
            raise _Outcome(RUNTIME_ERROR, "outputlimitexceeded", "output limit exceeded")
        except SandboxDied:
            if not died:
                raise
            raise _died(self._end_sandbox(wait=True))

    def _load(self, stdio: tuple[int, int] | None = None) -> None:
        """Start a sandbox and load the program; raises _Outcome(-2 / -1) on failure."""
        self.sandbox = self.spawn(stdio=stdio) if stdio else self.spawn()
        kind = {"stdin": "stdin", "call": "call", "assert": "module"}[self.fmt]
        req = {"kind": kind, "code": self.code, "fn_name": self.tests.get("fn_name"),
               "harness": self.harness}
        if kind == "module":
            req["names"] = self.spec["names"]
        try:
            self._begin_budget()
            if stdio is not None:  # harness "real": loading only compiles, no program code runs
                try:
                    reply = self._guard(lambda: self._request(req, "load"), died=False)
                except SandboxDied as e:  # so the sandbox failed, not the program: not its result
                    self._end_sandbox()
                    raise RuntimeError(f"sandbox ended before loading the program: {e}") from None
            else:
                reply = self._guard(lambda: self._request(req, "load"))
        except _Outcome as o:
            if o.code == FAILED or o.etype == "systemexit":
                raise  # exited at import: failed (status 0) or a runtime error, as in a test
            # timing out or crashing while importing is a compile error, like CodeRL's -2 for
            # anything raised while its harness loads the module
            raise _Outcome(COMPILE_ERROR, o.etype, o.msg, o.line) from None
        if not reply.get("ok"):
            exc = reply.get("exc") or {}
            self._end_sandbox()
            raise _Outcome(COMPILE_ERROR, str(exc.get("type", "error")), str(exc.get("msg", "")),
                           _line(exc.get("line")))
        if reply.get("missing"):
            self._end_sandbox()
            name = self.tests.get("fn_name") or "code"
            raise _Outcome(RUNTIME_ERROR, "attributeerror",
                           f"AttributeError: the program defines no function {name!r}")
        if kind == "module":
            try:
                self._build_namespace(reply.get("names") or {})
            except (codec.CodecError, ValueError, TypeError, OverflowError, AttributeError) as e:
                self._end_sandbox()
                raise _Outcome(COMPILE_ERROR, "protocolerror", f"invalid reply: {e}"[:500])

    def _build_namespace(self, names: dict) -> None:
        """The test code's namespace. A name that names a judge module (`sys`, `np`) is the
        judge's module even when the program bound it to something else (`sys = Fake()` must
        not answer `sys.getsizeof`), unless the test code calls it (the function under test)."""
        ns = {"__builtins__": builtins, "__name__": "__judge__"}
        wanted = set(self.spec["names"])
        for name, info in names.items():
            # only what was asked for: a forged reply must not plant `__builtins__` & co.
            if name not in wanted or name.startswith("__") or not isinstance(info, dict):
                continue
            module = MODULE_ALIASES.get(name, name)
            if "module" in info:
                mod = str(info["module"])
                if mod in JUDGE_MODULES:
                    ns[name] = importlib.import_module(mod)
            elif module in JUDGE_MODULES and name not in self._called_names():
                ns[name] = importlib.import_module(module)
            elif "v" in info:
                try:
                    ns[name] = codec.decode(info["v"], lambda h: Remote(self, h))
                except codec.CodecError as e:
                    self._end_sandbox()
                    raise _Outcome(RUNTIME_ERROR, "protocolerror",
                                   f"invalid reply: {e}"[:500]) from None
        self.ns = ns
        self._setup_done = False

    def _called_names(self) -> set[str]:
        """Names the test code calls (`f(...)`, `check(f)`): the program's functions."""
        if self._called is None:
            tests = self.tests
            self._called = subject_names(tests["asserts"])
            for text in [tests.get("setup_code") or "", *tests["asserts"]]:
                try:
                    tree = ast.parse(text)
                except SyntaxError:
                    continue
                self._called.update(n.func.id for n in ast.walk(tree)
                                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
        return self._called

    # -- one test ----------------------------------------------------------------------------------
    def _run_test(self, i: int) -> None:
        """Raises _Outcome for anything but a pass."""
        t = self.tests
        if self.fmt == "stdin":
            inp = t["inputs"][i]
            if isinstance(inp, list):
                inp = "\n".join(str(x) for x in inp)
            if self.per_test:
                return self._run_process_test(i, str(inp))
            reply = self._guard(lambda: self._request({"op": "stdin", "input": str(inp)}))
            self._raise_exc(reply)
            out = reply.get("out")  # the program may forge it (fd 3): bounded like a real one
            if type(out) is not str or reply.get("trunc") or len(out) > self.output_cap:
                raise _Outcome(FAILED, FAILED_TYPE, f"output of test {i} too large")
            if not apps_stdin_match(out, t["outputs"][i]):
                raise _Outcome(FAILED, FAILED_TYPE, f"wrong answer on test {i}")
        elif self.fmt == "call":
            args, expected = apps_call_args(t["inputs"][i], t["outputs"][i])
            if not isinstance(args, list):
                args = [args]
            reply = self._guard(lambda: self._request({"op": "call", "args": codec.encode(args)}))
            self._raise_exc(reply)
            try:
                value = codec.decode(reply.get("v"))
            except codec.CodecError as e:
                raise _Outcome(RUNTIME_ERROR, "protocolerror", f"invalid reply: {e}"[:500])
            try:
                ok = apps_call_match(value, expected)
            except Exception as e:  # noqa: BLE001 - as in CodeRL, a failing comparison is an error
                raise _Outcome(RUNTIME_ERROR, type(e).__name__.lower(), f"{type(e).__name__}: {e}")
            if not ok:
                raise _Outcome(FAILED, FAILED_TYPE, f"wrong answer on test {i}")
        else:
            self._guard(lambda: self._run_assert(i))

    def _run_process_test(self, i: int, text: str) -> None:
        """One standard-input test with the program run as a process (harness "real")."""
        out_fd = os.memfd_create("coderl-stdout", os.MFD_CLOEXEC)
        try:
            in_fd = _input_memfd(text.encode("utf-8", "replace"))
            try:
                self._load(stdio=(in_fd, out_fd))
            finally:
                os.close(in_fd)
            self._begin_budget()
            try:
                reply = self._guard(lambda: self._request({"op": "run"}), died=False)
            except SandboxDied:
                reply = None  # ended without reporting (os._exit, a signal): its status tells
            # the runtime exits right after reporting; a program that closed the socket and
            # lives on gets until the wall-clock deadline (then it is killed: a runtime error)
            wait = min(self._deadline - time.monotonic(), max(self.timeout, 1.0))
            select.select([self.sandbox.pidfd], [], [], max(wait, 0.0))
            status = self._end_sandbox(wait=True)
            size = os.fstat(out_fd).st_size
            if size > self.output_cap or status == -signal.SIGXFSZ:
                raise _Outcome(FAILED, FAILED_TYPE, f"output of test {i} too large")
            exc = reply.get("exc") if reply else None
            if exc:
                code = COMPILE_ERROR if exc.get("import") is True else RUNTIME_ERROR
                raise _Outcome(code, str(exc.get("type", "error"))[:100],
                               str(exc.get("msg", ""))[:1000], _line(exc.get("line")))
            if status != 0:
                raise _died(status)
            out = os.pread(out_fd, size, 0).decode("utf-8", "replace") if size else ""
        finally:
            os.close(out_fd)
        if not apps_stdin_match(out, self.tests["outputs"][i]):
            raise _Outcome(FAILED, FAILED_TYPE, f"wrong answer on test {i}")

    def _raise_exc(self, reply: dict) -> None:
        exc = reply.get("exc")
        if exc:
            raise _Outcome(RUNTIME_ERROR, str(exc.get("type", "error"))[:100],
                           str(exc.get("msg", ""))[:1000], _line(exc.get("line")))

    def _run_assert(self, i: int) -> None:
        try:
            if not self._setup_done:
                self._setup_done = True
                if self.tests.get("setup_code"):
                    exec(self._compile(self.tests["setup_code"], "<test setup>"), self.ns)
            exec(self._compile(self.tests["asserts"][i], f"<test {i}>"), self.ns)
        except (SandboxTimeout, SandboxDied, OutputLimit, _Outcome):
            raise
        except RemoteError as e:
            raise _Outcome(RUNTIME_ERROR, str(e.info.get("type", "error"))[:100],
                           str(e.info.get("msg", ""))[:1000], _line(e.info.get("line")))
        except AssertionError:
            raise _Outcome(FAILED, FAILED_TYPE, f"AssertionError on test {i}")
        except RecursionError as e:
            raise _Outcome(RUNTIME_ERROR, "recursionerror", f"RecursionError: {e}")
        except Exception as e:  # noqa: BLE001 - the program's values broke the test code
            raise _Outcome(RUNTIME_ERROR, type(e).__name__.lower(),
                           f"{type(e).__name__}: {e}"[:1000])

    # -- whole program -----------------------------------------------------------------------------
    def run(self) -> dict:
        """Judge the program; the result dict (SPEC §4). `self.phases` then holds the wall seconds
        spent starting sandboxes, loading the program, waiting for the sandbox's replies,
        compiling test code, ending sandboxes, and the rest of the judge's own work."""
        t0 = time.monotonic()
        start = time.perf_counter()
        n = len(self.tests["asserts"]) if self.fmt == "assert" else len(self.tests["inputs"])
        results: list[int] = []
        first: _Outcome | None = None
        if self.judge_cpu:
            _CLOCK.start(self.judge_cpu)
        try:
            for i in range(n):
                try:
                    if not self.per_test:
                        if self.sandbox is None:
                            self._load()
                        self._begin_budget()
                    self._run_test(i)
                    results.append(PASSED)
                except _Outcome as o:
                    results.append(o.code)
                    first = first or o
                    if o.code == COMPILE_ERROR or self.stop:
                        break
        finally:
            try:
                if self.sandbox is not None:
                    self._end_sandbox()
            finally:
                if self.judge_cpu:
                    _CLOCK.stop()
        if first is None:
            out = {"result": PASSED, "error_type": PASSED_TYPE, "error_message": "",
                   "error_line": None}
        else:
            out = {"result": first.code, "error_type": first.etype,
                   "error_message": first.msg, "error_line": first.line}
        out["tests"] = results
        out["seconds"] = round(time.monotonic() - t0, 6)
        self.phases["judge"] = max(time.perf_counter() - start - sum(self.phases.values()), 0.0)
        return {k: out[k] for k in ("result", "error_type", "tests", "seconds", "error_message",
                                    "error_line")}


def _line(v):
    return v if type(v) is int else None


def problem_spec(problem, example_tests: bool = False) -> dict:
    """What the judge needs of a Problem (plain JSON): its format and tests."""
    tests = problem.example_tests if example_tests else problem.tests
    if tests is None:
        raise ValueError(f"problem {problem.problem_id} has no example tests")
    spec = {"format": problem.format, "tests": tests.to_dict()}
    if problem.format == "assert":
        names = referenced_names(tests.setup_code + "\n" + "\n".join(tests.asserts))
        spec["names"] = sorted(set(names) | subject_names(tests.asserts))
    return spec
