"""coderl-jax: CodeRL (Le et al., NeurIPS 2022) in JAX/Flax.

`SPEC §N` in this repository's docstrings, comments and tests means section N of docs/SPEC.md,
the project's contract (command line, rows, outcome codes, rewards, prompt, models, demo).
"""

__version__ = "0.1.0"
