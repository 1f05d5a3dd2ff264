"""TFDS builders (array_record, read without TensorFlow) for APPS, MBPP, HumanEval and the demo set.

Build with `coderl data prepare --dataset apps|mbpp|humaneval|demo --data-dir D`; read back with
`coderl_jax.data.tfds.read.load_prepared(D/<name>/<version>)` or any SRC-taking command given that
folder. Builders are imported lazily (tensorflow_datasets is a heavy import).
"""
