"""What runs inside a sandbox process: load one program, then answer the judge's requests.

The sandbox never sees expected outputs. It receives the program and test inputs (stdin text,
call arguments, or operations on the program's objects for MBPP/HumanEval asserts), and answers
with what the program produced, as typed JSON (`codec`). Everything it says is untrusted: the
judge (`checkers`) decides pass/fail in another process.

APPS programs get CodeRL's prelude of imports (`sys`, `itertools`, `collections`, `math`,
`numpy as np`, `heapq`...; utils/testing_util.py) prepended in both harnesses: programs trained
under CodeRL rely on it. Call-based programs run as a module named `tmp_sol` (`if __name__ ==
"__main__":` blocks, which often read stdin, do not run); with `class Solution` in the text the
function is looked up on `Solution()`. MBPP/HumanEval programs run as a module named `solution`
with no prelude. Standard-input programs depend on the harness:

harness "real" (default): the program runs as a process, as contest judges run it. Each test is a
fresh sandbox whose fds 0 and 1 are the judge's memfds (test input; captured output). The program
(prelude + text) is compiled as module `__main__` (a syntax error is reported at load: -2), then
run once on request with fresh `sys.stdin`/`sys.stdout`/`sys.stderr` over fds 0/1/2, so
everything a real standard input offers works: `input()`, `readline` (newline kept), `read`
continuing from the current position, iteration, `sys.stdin.buffer`, `os.read(0, ...)`, and
output through `print`, `sys.stdout.buffer` or `os.write(1, ...)`, even when the program ends with
`os._exit`. Like the prelude, the names CodeRL's wrapper binds (`stdin`, `stdout`) are
predefined (the real streams), and a `return` outside any function (legal inside CodeRL's
`def code():`, and used by some APPS reference solutions) ends the program normally, as
`sys.exit()` would. At the end, as the interpreter would: non-daemon threads are joined, `atexit`
handlers run (the fork server's are cleared first), stdout/stderr are flushed; the runtime reports
an uncaught exception (type, message, line) and exits with the process's status (exception 1,
`SystemExit(code)` that code). `open(path)` with a path (not an fd) returns the test input as
CodeRL's `mock_open` did (writes ignored); `open(0)` is the real stdin.

harness "coderl": CodeRL's in-process semantics, one sandbox per program. The program is wrapped
into `def code():` (import lines before the first other line stay at module level, later ones
are indented; `stdin = sys.stdin` / `stdout = sys.stdout` are bound at module level), loaded as
module `tmp_sol`, and `code()` is called once per test under CodeRL's stacked `mock.patch`es:
  * inside the call `sys.stdin` is a plain `io.StringIO(input)` (CodeRL patches `readline`,
    `readlines`, `read` on the *original* `sys.stdin` first, then replaces `sys.stdin`), so
    `input()`, `readline` (newline kept), `read` and iteration share one position; there is no
    `sys.stdin.buffer` (AttributeError);
  * names bound at import (`stdin = sys.stdin` from the wrapper, a module-level
    `from sys import stdin`) hold the original stdin, whose patched `readline` returns the next
    line without its newline (StopIteration at the end), `readlines` the list of lines, `read`
    the whole input; anything else on it reads as an empty stream (CodeRL's was its own terminal);
  * `sys.stdout` is captured (capped, no `.buffer`; `close()` raises TypeError as CodeRL's
    `lambda x: 1` did); names bound at import (`stdout = sys.stdout`, `from sys import stdout`)
    are the original stdout, whose output is lost, as in CodeRL;
  * `open(...)` returns the input (`mock_open`); `SystemExit` ends the test normally; output
    written before `os._exit` is lost (the process is gone).
"""
from __future__ import annotations

import ast
import builtins
import io
import json
import os
import socket
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


# A program of ours that `warm_up` serves (never a judged program).
_WARM_PROGRAM = (
    "import math\nfrom collections import Counter\n"
    "def f(x, y=2):\n"
    "    return [x * y, (x, y), {x: y}, {x}, str(x), math.sqrt(abs(x)), Counter([x, x])]\n"
    "def g(s):\n    return s.upper() if s else int('x')\n"
    "class K:\n    def m(self, v):\n        return (v, self)\n"
)
_WARM_CALLS = ([3], [2.5, 1], ["ab", 3], [(1, 2), [1]], [{1: 2}, {3}])


def warm_up(rounds: int = 6) -> None:
    """Serve `_WARM_PROGRAM` through the runtime's own request path (load, calls on handles,
    replies, an exception), in-process over a socket pair: called in the fork server before it
    forks any sandbox, so the interpreter's adaptive bytecode and type caches on that path are
    already settled in the memory every sandbox shares, and each sandbox copies fewer of those
    pages (a copy-on-write fault costs microseconds). Leaves nothing behind: no module, fds or
    patched streams."""
    saved = sys.stdout, sys.stderr, sys.stdin, builtins.open
    try:
        for i in range(rounds):
            ours, theirs = socket.socketpair()
            try:
                rt = Runtime(theirs.fileno())

                def ask(req: dict) -> dict:
                    data = json.dumps(req).encode()
                    ours.sendall(struct.pack(">I", len(data)) + data)
                    return rt.recv()

                def answer(reply: dict) -> None:
                    rt.send(reply)
                    ours.recv(1 << 16)

                if i % 2:
                    answer(rt.load(ask({"kind": "call", "code": _WARM_PROGRAM, "fn_name": "f",
                                        "harness": "real"})))
                    for args in _WARM_CALLS:
                        answer(rt.handle(ask({"op": "call", "args": codec.encode(args)})))
                    continue
                answer(rt.load(ask({"kind": "module", "code": _WARM_PROGRAM,
                                    "names": ["K", "f", "g", "math"], "harness": "real"})))
                refs = {getattr(v, "__name__", ""): k for k, v in rt.objects.items()}
                for args in _WARM_CALLS:
                    answer(rt.handle(ask({"op": "rcall", "ref": refs["f"],
                                          "args": codec.encode(args), "kw": {"D": []}})))
                answer(rt.handle(ask({"op": "rcall", "ref": refs["g"], "args": [""],
                                      "kw": {"D": []}})))
                obj = rt.handle(ask({"op": "rcall", "ref": refs["K"], "args": [],
                                     "kw": {"D": []}}))
                answer(obj)
                answer(rt.handle(ask({"op": "getattr", "ref": obj["v"]["H"], "attr": "m"})))
            finally:
                ours.close()
                theirs.close()
    finally:
        sys.stdout, sys.stderr, sys.stdin, builtins.open = saved
        for name in ("solution", "tmp_sol"):
            sys.modules.pop(name, None)


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


class _CoderlCapture(_CappedOutput):
    """CodeRL's `Capturing` stdout: its `close` was replaced by `lambda x: 1`, so a program
    calling `sys.stdout.close()` gets a TypeError."""

    def close(self):
        raise TypeError("<lambda>() missing 1 required positional argument: 'x'")


class _OriginalStdin(io.StringIO):
    """What a standard-input program bound at import as `sys.stdin` (harness "coderl"): CodeRL's
    original `sys.stdin`, whose `readline`/`readlines`/`read` are patched during each test; any
    other use reads an empty stream."""

    def patch(self, text: str) -> None:
        it = iter(text.split("\n"))
        self.readline = lambda *_: next(it)  # CodeRL's patches ignore their arguments
        self.readlines = lambda *_: text.split("\n")
        self.read = lambda *_: text

    def unpatch(self) -> None:
        for name in ("readline", "readlines", "read"):
            self.__dict__.pop(name, None)


class _InputFile(io.StringIO):
    """What `open(...)` returns while a standard-input test runs (CodeRL mocks `open`)."""

    def write(self, s):
        return len(s)


class _TopLevelReturn(ast.NodeTransformer):
    """`return [value]` outside any function becomes `raise (value, SystemExit)[1]`: the value
    is evaluated, then the program ends normally, as the `return` did in CodeRL's `def code():`
    (some APPS reference solutions rely on it)."""

    def visit_FunctionDef(self, node):
        return node

    visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_FunctionDef

    def visit_Return(self, node):
        exit_ = ast.Name("SystemExit", ast.Load())
        exc = ast.Subscript(ast.Tuple([node.value or ast.Constant(None), exit_], ast.Load()),
                            ast.Constant(1), ast.Load())
        return ast.copy_location(ast.Raise(exc=exc, cause=None), node)


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
        self._first = True  # the first request may carry the program's stdin and stdout
        self.harness = "real"
        self.orig_in = _OriginalStdin("")
        self.orig_out = _CappedOutput(0)
        self.process_code = None  # compiled program run as a process (harness "real", stdin)
        self.import_lines = 0

    # -- framing ---------------------------------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        while len(self._rbuf) < n:
            if self._first:
                chunk = self._read_first(max(65536, n - len(self._rbuf)))
            else:
                chunk = os.read(self.fd, max(65536, n - len(self._rbuf)))
            if not chunk:
                os._exit(0)  # the judge went away
            self._rbuf += chunk
        data, self._rbuf = self._rbuf[:n], self._rbuf[n:]
        return data

    def _read_first(self, size: int) -> bytes:
        """The start of the first request, and the fds sent with it: the judge's memfds for a
        standard-input test, which become fds 0 and 1 (`Zygote.spawn(stdio=...)`)."""
        self._first = False
        sock = socket.socket(fileno=self.fd)
        try:
            chunk, fds, _, _ = socket.recv_fds(sock, size, 2)
        finally:
            sock.detach()
        for target, fd in zip((0, 1), fds):
            os.dup2(fd, target)
            os.close(fd)
        return chunk

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
        line = top = None
        if isinstance(e, SyntaxError) and e.filename == FILENAME and e.lineno:
            line = self._map_line(e.lineno)
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == FILENAME:
                line = self._map_line(tb.tb_lineno)
                if top is None:
                    top = line
            tb = tb.tb_next
        msg = f"{name}: {text}" if text else name
        info = {"type": name.lower(), "msg": msg[:1000], "line": line}
        if self.process_code is not None and top is not None and top <= self.import_lines:
            info["import"] = True  # raised by a leading import line: CodeRL's load phase
        return info

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
        self.harness = req.get("harness", "real")
        if kind == "stdin" and self.harness == "real":
            return self.load_process(code)
        if kind == "stdin":
            source, self.line_map = wrap_stdin_program(code)
            name = "tmp_sol"
        elif kind == "call":
            source, self.line_offset, name = APPS_PRELUDE + code, PRELUDE_LINES, "tmp_sol"
        else:
            source, name = code, "solution"
        sys.stdout = _CappedOutput(0)
        sys.stderr = _CappedOutput(0)
        if kind == "stdin":  # what names bound at import hold (CodeRL's own stdin / stdout)
            sys.stdin, sys.stdout = self.orig_in, self.orig_out
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

    def load_process(self, code: str) -> dict:
        """Harness "real": compile the program as `__main__` (run later by `run_process`)."""
        self.line_offset = PRELUDE_LINES
        for line in code.split("\n"):  # CodeRL's import block, loaded before any test runs
            if not (line.startswith("from ") or line.startswith("import ")):
                break
            self.import_lines += 1
        source = APPS_PRELUDE + code
        try:
            try:
                self.process_code = compile(source, FILENAME, "exec", dont_inherit=True)
            except SyntaxError as e:
                if e.msg != "'return' outside function":
                    raise
                tree = ast.fix_missing_locations(
                    _TopLevelReturn().visit(ast.parse(source, FILENAME)))
                self.process_code = compile(tree, FILENAME, "exec", dont_inherit=True)
        except BaseException as e:  # noqa: BLE001 - syntax error (or too deeply nested)
            return {"ok": False, "exc": self.exc_info(e)}
        return {"ok": True, "missing": False}

    def _input_file(self, file, *args, **kwargs):
        """`open` while a standard-input program runs as a process: an fd is opened for real
        (`open(0)` reads the real stdin); a path gives the test input, as CodeRL's mock_open."""
        if isinstance(file, int):
            return self._real_open(file, *args, **kwargs)
        try:
            size = os.fstat(self._input_fd).st_size
            data = os.pread(self._input_fd, size, 0)
        except OSError:
            data = b""
        return _InputFile(data.decode(self._enc[0], self._enc[1]))

    def run_process(self) -> None:
        """Harness "real": run the program as the process's main program; never returns."""
        import atexit
        import threading

        atexit._clear()  # the fork server's own handlers are not the program's
        enc = (getattr(sys.__stdin__, "encoding", None) or "utf-8",
               getattr(sys.__stdin__, "errors", None) or "strict")
        self._enc = enc
        self._input_fd = os.dup(0)
        streams = (
            io.TextIOWrapper(io.open(0, "rb", closefd=False), *enc, newline="\n"),
            io.TextIOWrapper(io.open(1, "wb", closefd=False), *enc, newline="\n"),
            io.TextIOWrapper(io.open(2, "wb", closefd=False), enc[0], "backslashreplace",
                             newline="\n", line_buffering=True))
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
        sys.argv = ["solution.py"]
        module = types.ModuleType("__main__")
        sys.modules["__main__"] = self.module = module
        # CodeRL's wrapper defines `stdin` / `stdout` for every standard-input program; like the
        # prelude they stay available (here the real streams)
        module.__dict__.update(stdin=sys.stdin, stdout=sys.stdout)
        self._real_open = builtins.open
        builtins.open = self._input_file
        status, exc = 0, None
        try:
            exec(self.process_code, module.__dict__)
        except SystemExit as e:
            status = _exit_status(e)
        except BaseException as e:  # noqa: BLE001 - the program's uncaught exception
            exc, status = self.exc_info(e), 1
        for step in (threading._shutdown, atexit._run_exitfuncs):  # as the interpreter's exit
            try:
                step()
            except SystemExit as e:
                status = _exit_status(e)
            except BaseException:  # noqa: BLE001
                pass
        for stream in (sys.stdout, sys.stderr, *streams[1:]):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - e.g. output beyond the file-size limit
                pass
        try:
            self.send({"exc": exc, "status": status})
        finally:  # the status speaks even if the program closed the judge's socket
            os._exit(status)

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
        """One standard-input test (harness "coderl"): call `code()` under CodeRL's patches."""
        out = _CoderlCapture(self.output_cap)
        saved = sys.stdin, sys.stdout, builtins.open
        self.orig_in.patch(text)
        sys.stdin, sys.stdout = io.StringIO(text), out
        builtins.open = lambda *_, **__: _InputFile(text)
        exc = None
        try:
            self.method()
        except SystemExit:
            pass
        except BaseException as e:  # noqa: BLE001
            exc = self.exc_info(e)
        finally:
            sys.stdin, sys.stdout, builtins.open = saved
            self.orig_in.unpatch()
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
            if req.get("op") == "run" and self.process_code is not None:
                self.run_process()
            self.send(self.handle(req))


def _exit_status(e: SystemExit) -> int:
    """The exit status the interpreter gives `SystemExit(code)` (a non-int code is printed)."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def main(fd: int, output_cap: int) -> None:
    """Entry point of a sandbox process (after isolation is in place); never returns."""
    try:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
        Runtime(fd, output_cap).serve()
    except BaseException:  # noqa: BLE001 - the program broke the runtime itself
        os._exit(4)
    os._exit(0)
