"""The bundled demo problem set: a few hundred small, real programming problems made by the project.

`load_demo(split, seed)` builds them from the families in `demo_families.py`: for each family it
draws distinct parameter points (operator, constants, output words, phrasing template), gives the
first ones to 'train' and the rest to 'heldout' (preferring points whose values train never saw;
a few harder variants appear only in 'heldout'), then for each point picks a format (APPS
`stdin` or `call`, alternating), writes an APPS-style statement with its examples, and computes
every test's expected output by running the first reference solution. Everything is drawn from
`random.Random` instances seeded by (seed, family, split, index): the same seed gives identical
records in any process, and no global random state is touched.

Call-based expected outputs are stored wrapped in a list (`[value]`), as APPS stores them; its
harness accepts a return value equal to either the stored output or its first element.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import random

from coderl_jax.data import demo_families as fam
from coderl_jax.data.records import Problem, Tests
from coderl_jax.errors import UserError

SPLITS = ("train", "heldout")
TEMPLATES = 3  # phrasing templates per format (part of every parameter point)
MIN_TESTS, MAX_TESTS = 5, 10
NAMES = (("Alice", "her"), ("Bob", "him"), ("Petya", "him"), ("Masha", "her"), ("Limak", "him"),
         ("Chef", "him"), ("Anna", "her"), ("Vasya", "him"))


@dataclasses.dataclass(frozen=True)
class DemoItem:
    """A demo problem plus what generated it: family, parameters and wrong programs."""

    problem: Problem
    family: str
    params: tuple[tuple[str, object], ...]  # sorted (name, value) pairs, template "t" included
    near_misses: tuple[str, ...]  # plausible wrong programs in the problem's format


def load_demo(split: str | None = None, seed: int = 0, train_scale: int = 1) -> list[Problem]:
    """The demo problems of `split` ('train', 'heldout' or None for both), built from `seed`;
    `train_scale` times as many training problems per family (see `build_demo`)."""
    if split not in (None, *SPLITS):
        raise UserError(f"unknown demo split {split!r}; choose one of {', '.join(SPLITS)}")
    return [it.problem for it in build_demo(seed, train_scale)
            if split is None or it.problem.split == split]


@functools.lru_cache(maxsize=4)
def build_demo(seed: int = 0, train_scale: int = 1) -> tuple[DemoItem, ...]:
    """Every demo problem with its metadata, in a fixed order (train first, then held-out).

    `train_scale` > 1: each family gets up to `train_scale` times its training problems; the
    extra ones come after the scale-1 set (which they leave as it is), from parameter points
    whose values no held-out problem has, so the held-out split is the same at every scale."""
    if not isinstance(train_scale, int) or train_scale < 1:
        raise UserError(f"the demo's train scale must be an integer >= 1, got {train_scale!r}")
    items = {s: [] for s in SPLITS}
    for family in fam.FAMILIES:
        for split, points in _split_points(family, seed, train_scale).items():
            offset = _format_offset(family, seed, split)
            for i, (params, t) in enumerate(points):
                rng = random.Random(f"coderl-demo/{seed}/{family.name}/{split}/{i}")
                spec = family.spec(params)
                formats = [f for f in family.formats if f in spec.formats]
                fmt = formats[(i + offset) % len(formats)]
                items[split].append(_make_item(family, spec, params, t, fmt, split, i, rng))
    return tuple(items["train"] + items["heldout"])


# ------------------------------------------------------------------------- parameter points


def _value_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _split_points(family: fam.Family, seed: int, train_scale: int = 1
                  ) -> dict[str, list[tuple[dict, int]]]:
    """Distinct (params, template) points for train and held-out; held-out prefers unseen values.
    Scale > 1 appends training points whose values held-out never has (as many as exist)."""
    rng = random.Random(f"coderl-demo/{seed}/{family.name}/points")
    points = [(p, t) for p in family.space for t in range(TEMPLATES)]
    rng.shuffle(points)
    n_train = 0 if family.heldout_only else family.n_train
    if n_train + family.n_heldout > len(points):
        raise ValueError(f"demo family {family.name}: only {len(points)} parameter points")
    train, rest = points[:n_train], points[n_train:]
    seen = {_value_key(p) for p, _ in train}
    rest.sort(key=lambda pt: _value_key(pt[0]) in seen)  # stable: unseen values first
    heldout = rest[:family.n_heldout]
    held_values = {_value_key(p) for p, _ in heldout}
    extra = [pt for pt in rest[family.n_heldout:] if _value_key(pt[0]) not in held_values]
    return {"train": train + extra[:(train_scale - 1) * n_train], "heldout": heldout}


def _format_offset(family: fam.Family, seed: int, split: str) -> int:
    return random.Random(f"coderl-demo/{seed}/{family.name}/{split}/format").randrange(2)


# ----------------------------------------------------------------------------- one problem


def _make_item(family, spec, params, t, fmt, split, index, rng) -> DemoItem:
    if fmt == "stdin":
        spec = dataclasses.replace(spec, domain=spec.domain.nonempty())
    domain = spec.domain
    name, pronoun = rng.choice(NAMES)
    hidden, examples = _draw_tests(spec, rng)
    programs = [program(spec, body, fmt, i) for i, body in enumerate(spec.bodies)]
    reference = programs[0]
    tests = _tests(spec, fmt, reference, hidden)
    example_tests = _tests(spec, fmt, reference, examples)
    question = _question(spec, fmt, t, name, pronoun, example_tests)
    problem = Problem(
        problem_id=f"demo-{split}-{family.name}-{index:02d}",
        question=question, format=fmt, tests=tests,
        starter_code=f"def {spec.fn_name}({', '.join(domain.args)}):\n" if fmt == "call" else "",
        example_tests=example_tests, solutions=tuple(programs), difficulty=family.difficulty,
        source="demo", split=split)
    misses = tuple(program(spec, body, fmt, 0) for body in spec.near_misses
                   if fmt == "call" or not body.call_only)
    return DemoItem(problem, family.name, _value_key({**params, "t": t}), misses)


def _draw_tests(spec: fam.Spec, rng: random.Random) -> tuple[list[tuple], list[tuple]]:
    """Hidden test arguments (the spec's edge cases plus typical ones) and 1-2 example arguments."""
    domain = spec.domain
    sample = spec.typical or domain.sample
    seen: set[str] = set()
    hidden: list[tuple] = []

    def add(args, into):
        key = json.dumps(args)
        if key not in seen and domain.valid(args):
            seen.add(key)
            into.append(args)

    for args in spec.edges:
        add(args, hidden)
    target = min(MAX_TESTS, max(rng.randint(6, 9), len(hidden) + 2))
    examples: list[tuple] = []
    n_examples = rng.randint(1, 2)
    for _ in range(500):
        if len(examples) < n_examples:
            add(sample(rng), examples)
        elif len(hidden) < target:
            add(sample(rng), hidden)
        else:
            break
    if len(hidden) < MIN_TESTS or not examples:
        raise ValueError(f"demo spec {spec.fn_name}: could not draw enough distinct tests")
    rng.shuffle(hidden)
    return hidden, examples


def _tests(spec: fam.Spec, fmt: str, reference: str, arg_list: list[tuple]) -> Tests:
    """Tests in the problem's format with outputs computed by running the reference program."""
    if fmt == "stdin":
        inputs = tuple(spec.domain.stdin(args) for args in arg_list)
        if any("" in x[:-1].split("\n") for x in inputs):
            raise ValueError(f"demo spec {spec.fn_name}: a stdin test holds an empty line")
        return Tests(inputs=inputs, outputs=tuple(run_stdin(reference, x) for x in inputs))
    inputs = tuple(json.loads(json.dumps(list(args))) for args in arg_list)
    outputs = tuple([run_call(reference, spec.fn_name, x)] for x in inputs)
    if json.loads(json.dumps(outputs)) != list(map(list, outputs)):
        raise ValueError(f"demo spec {spec.fn_name}: outputs do not survive JSON")
    return Tests(inputs=inputs, outputs=outputs, fn_name=spec.fn_name)


# ------------------------------------------------------------------------------- programs


def program(spec: fam.Spec, body: fam.Body, fmt: str, variant: int = 0) -> str:
    """A complete program for `body` in `fmt` ('stdin' reads and prints, 'call' defines fn)."""
    lines = body.code.split("\n")
    imports = [ln for ln in lines if ln.startswith("import ")]
    code = [ln for ln in lines if not ln.startswith("import ")]
    out = list(imports)
    result = body.code if body.kind == "expr" else "ans"
    if fmt == "stdin":
        out.append(spec.domain.read)
        if body.kind == "block":
            out += code
        out.append(_emit(spec, result, variant))
    else:
        out.append(f"def {spec.fn_name}({', '.join(spec.domain.args)}):")
        if body.kind == "block":
            out += ["    " + ln for ln in code]
        out.append(f"    return {result}")
    return "\n".join(out) + "\n"


def _emit(spec: fam.Spec, x: str, variant: int) -> str:
    if spec.output == "bool":
        yes, no = spec.words
        return f'print("{yes}" if {x} else "{no}")'
    if spec.output == "spaced":
        return f"print(*{x})" if variant % 2 == 0 else f"print(' '.join(map(str, {x})))"
    return f"print({x})"


def run_stdin(code: str, text: str) -> str:
    """Stdout of `code` run on `text`, in-process, with `input` and `print` bound to buffers."""
    lines = iter(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"))
    out: list[str] = []

    def _input(prompt=""):  # noqa: ARG001 (input()'s signature)
        try:
            return next(lines)
        except StopIteration:
            raise EOFError("EOF when reading a line") from None

    def _print(*args, sep=" ", end="\n"):
        out.append(sep.join(map(str, args)) + end)

    exec(compile(code, "<demo>", "exec"),
         {"__name__": "__main__", "input": _input, "print": _print})
    return "".join(out)


def run_call(code: str, fn_name: str, args: list):
    """The return value of `fn_name(*args)` defined by `code` (tuples become lists, as in APPS)."""
    namespace: dict = {"__name__": "__demo__"}
    exec(compile(code, "<demo>", "exec"), namespace)
    value = namespace[fn_name](*json.loads(json.dumps(args)))
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------------------------ statements


def _question(spec: fam.Spec, fmt: str, t: int, name: str, pronoun: str, examples: Tests) -> str:
    """APPS-style statement: codeforces layout for stdin, codewars layout for call."""
    d = spec.domain
    is_bool = spec.output == "bool"
    task = spec.task
    if fmt == "stdin":
        intro = (
            [f"You are given {d.given()}. Determine whether {task}.",
             f"{name} has {d.given()} and wants to know whether {task}. Help {pronoun}!",
             f"Read {d.given()} and check whether {task}."] if is_bool else
            [f"You are given {d.given()}. Print {task}.",
             f"{name} has {d.given()} and asks you for {task}.",
             f"Read {d.given()} and output {task}."])[t]
        if is_bool:
            output = f'Print "{spec.words[0]}" if {task}, and "{spec.words[1]}" otherwise.'
        else:
            output = f"Print {spec.out_desc}."
        header = "-----Example-----" if len(examples) == 1 else "-----Examples-----"
        shown = "\n".join(f"Input\n{x}\nOutput\n{y}"
                          for x, y in zip(examples.inputs, examples.outputs))
        parts = [_sentence(intro, spec.note), "-----Input-----", d.input_section(),
                 "-----Output-----", output, f"{header}\n{shown}"]
        return "\n\n".join(parts)
    returns = f"True if {task}, and False otherwise" if is_bool else task
    intro = [f"Write a function `{spec.fn_name}` that takes {d.given_call()} and returns "
             f"{returns}.",
             f"{name} needs a function `{spec.fn_name}`. It receives {d.given_call()} and must"
             f" return {returns}. Help {pronoun} write it!",
             f"Complete the function `{spec.fn_name}`: given {d.given_call()}, return "
             f"{returns}."][t]
    shown = "\n".join(
        f"    {spec.fn_name}({', '.join(map(repr, x))}) == {y[0]!r}"
        for x, y in zip(examples.inputs, examples.outputs))
    return "\n\n".join([_sentence(intro, spec.note), "Examples:", shown]) + "\n"


def _sentence(intro: str, note: str) -> str:
    return f"{intro} {note}" if note else intro
