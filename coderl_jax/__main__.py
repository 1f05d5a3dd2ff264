"""`python -m coderl_jax` is the `coderl` command."""
from coderl_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
