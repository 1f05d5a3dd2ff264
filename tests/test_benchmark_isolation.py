"""Benchmark references run in a spawned process: results and errors come back, args pickle."""
import argparse
import os

import pytest

from coderl_jax.benchmarks import isolation


def _pid_and_sum(values):
    return {"pid": os.getpid(), "sum": sum(values),
            "jax_loaded": "jax" in __import__("sys").modules}


def _fail():
    raise ValueError("reference broke")


def test_runs_in_another_fresh_process():
    import jax  # noqa: F401 - loaded here, must not be in the child

    out = isolation.run_in_fresh_process(_pid_and_sum, [1, 2, 3])
    assert out["pid"] != os.getpid() and out["sum"] == 6
    assert out["jax_loaded"] is False
    assert out["peak_host_memory_mb"] > 0


def _modules_loaded_by(names):
    import importlib
    import sys

    for name in names:
        importlib.import_module(name)
    return {"jax": "jax" in sys.modules, "torch": "torch" in sys.modules}


def test_a_reference_process_loads_no_jax_from_the_benchmark_modules():
    """The reference side's process imports its benchmark module (to unpickle its function):
    that must not bring JAX in, or the reference would run beside JAX's threads and memory."""
    out = isolation.run_in_fresh_process(
        _modules_loaded_by, ["coderl_jax.benchmarks.sample", "coderl_jax.benchmarks.train"])
    assert out["jax"] is False and out["torch"] is False


def test_errors_reraise_here():
    with pytest.raises(ValueError, match="reference broke"):
        isolation.run_in_fresh_process(_fail)


def test_plain_args_drop_callables():
    args = argparse.Namespace(size="tiny", steps=2, run=lambda: None)
    assert vars(isolation.plain_args(args)) == {"size": "tiny", "steps": 2}


def test_reference_device_follows_our_backend_unless_asked():
    assert isolation.reference_device("auto", "gpu") == "cuda"
    assert isolation.reference_device("auto", "cpu") == "cpu"
    assert isolation.reference_device("auto", "tpu") == "cpu"  # torch has no TPU device here
    assert isolation.reference_device("cpu", "gpu") == "cpu"
    assert isolation.reference_device("cuda", "cpu") == "cuda"


def test_cuda_reference_without_cuda_fails_at_once_in_one_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA device")
    from coderl_jax.cli import main
    from coderl_jax.errors import UserError

    with pytest.raises(UserError, match="sees no CUDA device"):
        isolation.check_torch_device("cuda")
    assert isolation.check_torch_device("cpu") == {}
    # the CLI says so before running our side: one line, exit code 2
    assert main(["benchmark", "train", "--size", "tiny", "--reference-device", "cuda"]) == 2
    assert main(["benchmark", "sample", "--size", "tiny", "--reference-device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["coderl: error: --reference-device cuda: this torch build sees no CUDA "
                   "device"] * 2
