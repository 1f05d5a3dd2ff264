"""The shipped configs: `configs/X.py` of a checkout, `coderl_jax.configs` once installed (see
pyproject.toml's package-dir). Each is loaded by path (`coderl_jax.config.load_config`), so
`--config configs/X.py` names one from any folder."""
