"""What runs inside a sandbox process: load one program, then answer the judge's requests.

The sandbox never sees expected outputs. It receives the program and, one at a time, test inputs
(stdin text, call arguments, or operations on the program's objects for MBPP/HumanEval asserts),
and answers with what the program produced, as typed JSON (`codec`). Everything it says is
untrusted: the judge (`checkers`) decides pass/fail in another process.

Program loading follows the APPS/CodeRL harness (utils/testing_util.py) so outcomes match the
rewards CodeRL trained with:
  * a prelude of imports (`sys`, `itertools`, `collections`, `math`, `numpy as np`, `heapq`...)
    is prepended to APPS programs, so generated code may rely on them;
  * standard-input programs are wrapped into `def code():` (import lines before the first other
    line stay at module level; later ones are indented) and `code()` is called once per test with
    `sys.stdin` replaced by the test input (`readline`/`readlines` return lines without their
    newline, like CodeRL's patches; `open(...)` reads the input; `SystemExit` ends the test
    normally), stdout captured (capped);
  * call-based programs are executed as a module named `tmp_sol`; if the text contains
    `class Solution` the function is looked up on `Solution()`, else on the module;
  * MBPP/HumanEval programs are executed as a module named `solution` with no prelude.
Module names are not `__main__`, as in CodeRL, so `if __name__ == "__main__":` blocks do not run.
"""
from __future__ import annotations

import builtins
import io
import json
import os
import struct
import sys
import types

from coderl_jax.execution import codec

FILENAME = "<solution>"
MAX_FRAME = 64 << 20  # largest request accepted from the judge

# The imports CodeRL's harness prepends to every APPS program (same modules and names).
APPS_PRELUDE = (
    "import sys\nimport time\nimport itertools\n"
    "from itertools import accumulate, product, permutations, combinations\n"
    "import collections\n"
    "from collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\n"
    "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport numpy as np\nimport random\n"
    "import heapq\nfrom heapq import *\n"
)
PRELUDE_LINES = APPS_PRELUDE.count("\n")

# Modules imported once in the fork server so programs start warm.
PRELOAD = ("array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses",
           "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq",
           "itertools", "json", "math", "numpy", "operator", "queue", "random", "re",
           "statistics", "string", "struct", "textwrap", "time", "typing", "unicodedata")


def preload() -> None:
    """Import the modules programs commonly use (called in the fork server)."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - optional (numpy)
            pass


def wrap_stdin_program(code: str) -> tuple[str, list[int | None]]:
    """CodeRL's transformation of a standard-input program into `def code():`.

    Returns the source to compile (prelude included) and, for each of its lines (1-based index
    into the list), the line of `code` it came from (None for harness lines)."""
    out: list[tuple[str, int | None]] = [(line, None) for line in APPS_PRELUDE.splitlines()]
    started = False
    for lineno, line in enumerate(code.split("\n"), 1):
        is_import = line.startswith("from ") or line.startswith("import ")
        if not is_import:
            if not started:
                out += [("stdin = sys.stdin", None), ("stdout = sys.stdout", None),
                        ("def code():", None)]
                started = True
            out.append(("\t" + line, lineno))
        elif started:
            out.append(("\t" + line, lineno))
        else:
            out.append((line, lineno))
    source = "".join(text + "\n" for text, _ in out)
    return source, [None] + [n for _, n in out]


class _CappedOutput(io.StringIO):
    """stdout replacement keeping at most `cap` characters (the rest is counted, dropped)."""

    def __init__(self, cap: int):
        super().__init__()
        self.cap = cap
        self.size = 0
        self.truncated = False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"string argument expected, got '{type(s).__name__}'")
        n = len(s)
        if not self.truncated:
            if self.size + n <= self.cap:
                super().write(s)
            else:
                super().write(s[: self.cap - self.size])
                self.truncated = True
        self.size += n
        return n

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def close(self):  # programs closing stdout must not lose the capture
        pass


class _InputFile(io.StringIO):
    """What `open(...)` returns while a standard-input test runs (CodeRL mocks `open`)."""

    def write(self, s):
        return len(s)


class _Current:
    """Bound to `sys.stdin` / `sys.stdout` while a standard-input program loads: module-level
    `from sys import stdin` or CodeRL's `stdin = sys.stdin` then read the current test's input
    (in CodeRL they would hold the harness's own terminal and the program would fail)."""

    def __init__(self, runtime: "Runtime", attr: str):
        object.__setattr__(self, "_rt", runtime)
        object.__setattr__(self, "_attr", attr)

    def _target(self):
        return getattr(self._rt, self._attr)

    def __getattr__(self, name):
        return getattr(self._target(), name)

    def __setattr__(self, name, value):
        setattr(self._target(), name, value)

    def __iter__(self):
        return iter(self._target())

    def __next__(self):
        return next(self._target())

    def __enter__(self):
        return self._target().__enter__()

    def __exit__(self, *exc):
        return self._target().__exit__(*exc)


class Runtime:
    """Serves one program over a connected socket fd (length-prefixed JSON frames)."""

    def __init__(self, fd: int, output_cap: int = 1 << 22):
        self.fd = fd
        self.output_cap = output_cap
        self.module: types.ModuleType | None = None
        self.method = None
        self.line_map: list[int | None] | None = None
        self.line_offset = 0
        self.objects: dict[int, object] = {}
        self._rbuf = b""
        self.cur_in: io.StringIO = io.StringIO("")
        self.cur_out: io.StringIO = _CappedOutput(0)

    # -- framing ---------------------------------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        while len(self._rbuf) < n:
            chunk = os.read(self.fd, max(65536, n - len(self._rbuf)))
            if not chunk:
                os._exit(0)  # the judge went away
            self._rbuf += chunk
        data, self._rbuf = self._rbuf[:n], self._rbuf[n:]
        return data

    def recv(self) -> dict:
        (n,) = struct.unpack(">I", self._read_exact(4))
        if n > MAX_FRAME:
            os._exit(3)
        return json.loads(self._read_exact(n))

    def send(self, obj) -> None:
        try:
            data = json.dumps(obj).encode()
        except (ValueError, TypeError, RecursionError) as e:
            data = json.dumps({"exc": {"type": "outputlimitexceeded",
                                       "msg": f"result could not be sent: {e}"[:500],
                                       "line": None}}).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            view = view[os.write(self.fd, view):]

    # -- errors ----------------------------------------------------------------------------------
    def exc_info(self, e: BaseException) -> dict:
        name = type(e).__name__
        try:
            text = e.msg if isinstance(e, SyntaxError) and isinstance(e.msg, str) else str(e)
        except BaseException:  # noqa: BLE001 - hostile __str__
            text = ""
        line = None
        if isinstance(e, SyntaxError) and e.filename == FILENAME and e.lineno:
            line = self._map_line(e.lineno)
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == FILENAME:
                line = self._map_line(tb.tb_lineno)
            tb = tb.tb_next
        msg = f"{name}: {text}" if text else name
        return {"type": name.lower(), "msg": msg[:1000], "line": line}

    def _map_line(self, lineno: int) -> int | None:
        if self.line_map is not None:
            return self.line_map[lineno] if 0 < lineno < len(self.line_map) else None
        n = lineno - self.line_offset
        return n if n > 0 else None

    # -- handles ---------------------------------------------------------------------------------
    def _handle(self, obj) -> int:
        hid = len(self.objects) + 1
        self.objects[hid] = obj
        return hid

    def _ref(self, ref):
        if type(ref) is int:
            return self.objects[ref]
        return self.module.__dict__[ref]

    def _decode(self, data):
        return codec.decode(data, self.objects.__getitem__)

    def _encode(self, value):
        return codec.encode(value, self._handle)

    # -- loading ---------------------------------------------------------------------------------
    def load(self, req: dict) -> dict:
        kind, code = req["kind"], req["code"]
        if kind == "stdin":
            source, self.line_map = wrap_stdin_program(code)
            name = "tmp_sol"
        elif kind == "call":
            source, self.line_offset, name = APPS_PRELUDE + code, PRELUDE_LINES, "tmp_sol"
        else:
            source, name = code, "solution"
        sys.stdout = _CappedOutput(0)
        sys.stderr = _CappedOutput(0)
        if kind == "stdin":
            sys.stdin, sys.stdout = _Current(self, "cur_in"), _Current(self, "cur_out")
        module = types.ModuleType(name)
        sys.modules[name] = module
        self.module = module
        try:
            exec(compile(source, FILENAME, "exec", dont_inherit=True), module.__dict__)
            if kind == "call":
                target = module.Solution() if "class Solution" in code else module
                self.method = getattr(target, req["fn_name"], None)
            elif kind == "stdin":
                self.method = module.__dict__.get("code")
        except SystemExit as e:  # exiting at import: the process ends as the program asked
            code = e.code
            os._exit(0 if code is None else code & 0xFF if isinstance(code, int) else 1)
        except BaseException as e:  # noqa: BLE001 - any other failure to load: compile error
            return {"ok": False, "exc": self.exc_info(e)}
        reply: dict = {"ok": True, "missing": kind != "module" and not callable(self.method)}
        if kind == "module":
            reply["names"] = self.describe(req.get("names", []))
        return reply

    def describe(self, names: list[str]) -> dict:
        """Kinds of the requested module globals: a module (by name) or an encoded value."""
        out = {}
        g = self.module.__dict__
        for name in names:
            if type(name) is not str or name not in g:
                continue
            obj = g[name]
            if isinstance(obj, types.ModuleType):
                out[name] = {"module": getattr(obj, "__name__", "")}
            else:
                out[name] = {"v": self._encode(obj)}
        return out

    # -- requests --------------------------------------------------------------------------------
    def run_stdin(self, text: str) -> dict:
        """One standard-input test: call `code()` with CodeRL's stdin patches."""
        lines = text.split("\n")
        it = iter(lines)
        fake_stdin = io.StringIO(text)
        fake_stdin.readline = lambda *a: next(it)
        fake_stdin.readlines = lambda *a: text.split("\n")
        fake_stdin.read = lambda *a: text
        out = _CappedOutput(self.output_cap)
        saved = sys.stdin, sys.stdout, builtins.open
        self.cur_in, self.cur_out = fake_stdin, out
        sys.stdin, sys.stdout = fake_stdin, out
        builtins.open = lambda *a, **k: _InputFile(text)
        exc = None
        try:
            self.method()
        except SystemExit:
            pass
        except BaseException as e:  # noqa: BLE001
            exc = self.exc_info(e)
        finally:
            sys.stdin, sys.stdout, builtins.open = saved
            self.cur_in, self.cur_out = io.StringIO(""), _CappedOutput(0)
        return {"out": out.getvalue(), "trunc": out.truncated, "exc": exc}

    def handle(self, req: dict) -> dict:
        op = req["op"]
        try:
            if op == "stdin":
                return self.run_stdin(req["input"])
            if op == "call":
                sys.stdout = _CappedOutput(0)
                args = self._decode(req["args"])
                return {"v": self._encode(self.method(*args))}
            if op == "rcall":
                fn = self._ref(req["ref"])
                args = self._decode(req["args"])
                kwargs = self._decode(req.get("kw", {"D": []}))
                return {"v": self._encode(fn(*args, **kwargs))}
            obj = self._ref(req["ref"])
            if op == "getattr":
                return {"v": self._encode(getattr(obj, req["attr"]))}
            if op == "setattr":
                setattr(obj, req["attr"], self._decode(req["value"]))
                return {"v": None}
            if op == "iter":
                return {"v": self._encode(list(obj))}
            if op == "len":
                return {"v": len(obj)}
            if op == "bool":
                return {"v": bool(obj)}
            if op == "str":
                return {"v": str(obj)[: self.output_cap]}
            if op == "repr":
                return {"v": repr(obj)[: self.output_cap]}
            if op == "getitem":
                return {"v": self._encode(obj[self._decode(req["key"])])}
            if op == "contains":
                return {"v": self._decode(req["item"]) in obj}
            return {"exc": {"type": "protocolerror", "msg": f"unknown op {op!r}", "line": None}}
        except BaseException as e:  # noqa: BLE001
            return {"exc": self.exc_info(e)}

    def serve(self) -> None:
        req = self.recv()
        reply = self.load(req)
        self.send(reply)
        if not reply["ok"]:
            os._exit(0)
        while True:
            req = self.recv()
            if req.get("op") == "bye":
                os._exit(0)
            self.send(self.handle(req))


def main(fd: int, output_cap: int) -> None:
    """Entry point of a sandbox process (after isolation is in place); never returns."""
    try:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
        Runtime(fd, output_cap).serve()
    except BaseException:  # noqa: BLE001 - the program broke the runtime itself
        os._exit(4)
    os._exit(0)
