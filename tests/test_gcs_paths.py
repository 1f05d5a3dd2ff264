"""Work folders on a bucket: every command's gs:// paths against a real GCS server
(`gcp-storage-emulator` on 127.0.0.1), with each client pointed at it by its own documented
emulator setting (see gcs_emulator.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from coderl_jax import cli, paths
from coderl_jax.errors import UserError

from conftest import REPO
from gcs_emulator import client_env, emulator

pytest.importorskip("gcp_storage_emulator")  # (gcsfs is imported after client_env is set)

BUCKET = "coderl-test"
SMALL = ["--config.model.num_encoder_layers=1", "--config.model.num_decoder_layers=1",
         "--config.model.d_model=32", "--config.model.d_ff=64", "--config.model.d_kv=8",
         "--config.data.max_source_len=32", "--config.data.max_target_len=32",
         "--config.train.batch_size=8", "--config.train.log_every=1", "--no-progress"]


@pytest.fixture(scope="module")
def gcs():
    """The emulator's URL; the clients of this process (and of subprocesses given
    `os.environ`) talk to it. One for the module: gcsfs and tensorstore read their endpoint
    once per process, so no other module may start a second one."""
    with emulator(BUCKET) as url, pytest.MonkeyPatch.context() as mp:
        for key, value in client_env(url).items():
            mp.setenv(key, value)
        yield url


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith("coderl: error:") and "\n" not in err, err
    for f in fragments:
        assert f in err, err
    return err


# ------------------------------------------------------------------------------ the library


@pytest.mark.usefixtures("gcs")
def test_files_and_appends_on_a_bucket():
    from coderl_jax.files import atomic_write, read_jsonl, write_jsonl

    base = paths.as_path(f"gs://{BUCKET}/files")
    assert write_jsonl(base / "rows.jsonl", [{"a": 1}, {"a": 2}]) == 2
    assert read_jsonl(f"gs://{BUCKET}/files/rows.jsonl") == [{"a": 1}, {"a": 2}]
    # a failed atomic write leaves the object as it was
    with pytest.raises(RuntimeError):
        with atomic_write(base / "rows.jsonl") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert read_jsonl(base / "rows.jsonl") == [{"a": 1}, {"a": 2}]
    # appends: held back until the interval or a forced flush, other writers' rows kept
    log = base / "log.txt"
    app = paths.Appender(log, remote_every_s=3600)
    app.write("one\n")
    app.flush()
    assert not log.exists()
    with paths.open_append(log) as other:
        other.write("other\n")
    app.write("two\n")
    app.close()
    assert log.read_text() == "other\none\ntwo\n"
    # a local folder put on the bucket, replacing what was there
    (base / "dir" / "stale.txt").write_text("old")
    local = paths.as_path(os.environ.get("TMPDIR", "/tmp")) / f"coderl-up-{os.getpid()}"
    (local / "sub").mkdir(parents=True, exist_ok=True)
    (local / "sub" / "x.txt").write_text("x")
    paths.replace_dir(local, base / "dir")
    assert (base / "dir" / "sub" / "x.txt").read_text() == "x"
    assert not (base / "dir" / "stale.txt").exists() and not local.exists()


@pytest.mark.usefixtures("gcs")
def test_listings_show_what_another_process_wrote():
    """No stale folder listings: a checkpoint written by another process (a killed run, another
    host) is seen at once."""
    folder = paths.as_path(f"gs://{BUCKET}/other")
    assert not folder.exists() and list(paths.as_path(f"gs://{BUCKET}").iterdir()) is not None
    subprocess.run([sys.executable, "-c", "from etils import epath; "
                    f"epath.Path('gs://{BUCKET}/other/x.txt').write_text('x')"],
                   check=True, env=dict(os.environ))
    assert folder.is_dir() and [p.name for p in folder.iterdir()] == ["x.txt"]


@pytest.mark.usefixtures("gcs")
def test_missing_bucket_and_object_are_user_errors():
    from coderl_jax.files import read_jsonl

    with pytest.raises(UserError, match="bucket not found: gs://no-such-bucket"):
        read_jsonl("gs://no-such-bucket/rows.jsonl")
    with pytest.raises(UserError, match=f"file not found: gs://{BUCKET}/nothing.jsonl"):
        read_jsonl(f"gs://{BUCKET}/nothing.jsonl")
    with pytest.raises(UserError, match="no bucket name"):
        paths.as_path("gs:///x")
    assert str(paths.absolute(f"gs://{BUCKET}/a/b")) == f"gs://{BUCKET}/a/b"


@pytest.mark.usefixtures("gcs")
def test_tfds_dataset_on_a_bucket(capsys):
    """`coderl data prepare --data-dir gs://...` builds and uploads; the bucket folder is a
    problems SRC."""
    from coderl_jax.data import demo
    from coderl_jax.data.sources import load_problems

    assert cli.main(["data", "prepare", "--dataset", "demo", "--data-dir", f"gs://{BUCKET}/tfds",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["path"].startswith(f"gs://{BUCKET}/tfds/")
    assert paths.as_path(result["path"]).joinpath("dataset_info.json").is_file()
    assert result["splits"]["heldout"] == len(demo.load_demo(split="heldout"))
    assert load_problems(result["path"], "heldout") == demo.load_demo(split="heldout")


# ------------------------------------------------------------- commands on a bucket model


@pytest.fixture(scope="module")
def gs_model(gcs):  # noqa: ARG001 (the emulator must run)
    """A tiny random actor saved straight to the bucket, and its params."""
    from coderl_jax.checkpoint_io import save_model
    from coderl_jax.config import model_preset
    from coderl_jax.models import t5

    config = model_preset("tiny", dropout_rate=0.0)
    params = t5.init_params(config, jax.random.PRNGKey(0))
    path = f"gs://{BUCKET}/models/actor"
    assert str(save_model(path, params, config)) == path
    return path, params


def test_model_checkpoint_on_a_bucket_round_trips(gs_model):
    from coderl_jax.checkpoint_io import CONFIG_FILE, is_model_dir, load_model
    from coderl_jax.config import model_preset

    path, params = gs_model
    assert is_model_dir(path) and paths.as_path(path).joinpath(CONFIG_FILE).is_file()
    loaded, config, critic = load_model(path)
    assert critic is None and config == model_preset("tiny", dropout_rate=0.0)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_bucket_model_is_complete_only_with_its_config(gs_model):
    """On a bucket the config is written last: without it (a save cut short) the folder is no
    checkpoint, and the next save replaces it."""
    from coderl_jax.checkpoint_io import CONFIG_FILE, load_model, save_model
    from coderl_jax.config import model_preset

    _, params = gs_model
    config = model_preset("tiny", dropout_rate=0.0)
    path = f"gs://{BUCKET}/models/cut"
    save_model(path, params, config)
    paths.as_path(path).joinpath(CONFIG_FILE).unlink()
    with pytest.raises(UserError, match="not a model checkpoint"):
        load_model(path)
    doubled = jax.tree.map(lambda a: np.asarray(a) * 2, params)
    save_model(path, doubled, config)
    for a, b in zip(jax.tree.leaves(doubled), jax.tree.leaves(load_model(path)[0])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_generate_reads_and_writes_the_bucket(gs_model, tokenizer_dir, capsys):
    path, _ = gs_model
    out = f"gs://{BUCKET}/gen/programs.jsonl"
    assert cli.main(["generate", "--checkpoint", path, "--tokenizer", str(tokenizer_dir),
                     "--problems", "demo", "--limit", "2", "--num-samples", "2",
                     "--max-new-tokens", "4", "--out", out]) == 0
    rows = [json.loads(line) for line in paths.as_path(out).read_text().splitlines()]
    assert sorted((r["problem_id"], r["sample_index"]) for r in rows) == sorted(
        {(r["problem_id"], i) for r in rows for i in (0, 1)})
    assert len(rows) == 4 and all(1 <= len(r["output_ids"]) <= 4 for r in rows)
    assert not paths.as_path(out + ".partial").exists()
    # the next stages read and write the bucket too
    results = f"gs://{BUCKET}/gen/results.jsonl"
    assert cli.main(["run-tests", "--problems", "demo", "--programs", out, "--out", results,
                     "--workers", "1"]) == 0
    executed = [json.loads(line) for line in paths.as_path(results).read_text().splitlines()]
    assert [(r["problem_id"], r["sample_index"]) for r in executed] == \
        [(r["problem_id"], r["sample_index"]) for r in rows]
    assert all(r["result"] in (-2, -1, 0, 1) for r in executed)
    capsys.readouterr()
    assert cli.main(["evaluate", "--results", results, "--k", "1", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    passed = sum(1 for r in executed if r["result"] == 1)
    assert metrics["num_problems"] == 2 and 0.0 <= metrics["pass@1"] <= 1.0
    assert (metrics["pass@1"] > 0) == (passed > 0)


def test_convert_to_hf_from_a_bucket_checkpoint(gs_model, tmp_path):
    from safetensors.numpy import load_file

    from coderl_jax.convert import hf_state_to_params
    from coderl_jax.hf_config import model_config_from_hf

    path, params = gs_model
    for out in (tmp_path / "hf", f"gs://{BUCKET}/hf"):
        assert cli.main(["convert", "to-hf", "--checkpoint", path, "--out", str(out)]) == 0
        with paths.local_copy(out) as local:
            hf_config = json.loads((local / "config.json").read_text())
            state = load_file(str(local / "model.safetensors"))
        config = model_config_from_hf(hf_config)
        back = hf_state_to_params(state, config, None)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and back from the bucket's HF folder to a bucket model checkpoint
    assert cli.main(["convert", "from-hf", "--hf-dir", f"gs://{BUCKET}/hf",
                     "--out", f"gs://{BUCKET}/models/back"]) == 0
    from coderl_jax.checkpoint_io import load_model

    back, _, _ = load_model(f"gs://{BUCKET}/models/back")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("argv,fragments", [
    (["generate", "--checkpoint", "gs://no-such-bucket/model", "--problems", "demo",
      "--out", "OUT"],
     ["bucket not found: gs://no-such-bucket"]),
    (["generate", "--checkpoint", f"gs://{BUCKET}/no/model", "--problems", "demo",
      "--out", "OUT"],
     [f"checkpoint not found: gs://{BUCKET}/no/model"]),
    (["convert", "to-hf", "--checkpoint", "gs://no-such-bucket/model", "--out", "OUT"],
     ["bucket not found: gs://no-such-bucket"]),
    (["train", "--config", str(REPO / "configs" / "tiny.py"), "--workdir",
      "gs://no-such-bucket/run"], ["bucket not found: gs://no-such-bucket"]),
])
@pytest.mark.usefixtures("gcs")
def test_bad_bucket_input_is_a_one_line_error(tmp_path, capsys, argv, fragments):
    argv = [str(tmp_path / "out.jsonl") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 2
    _one_line_error(capsys, *fragments)


# --------------------------------------------------------------------- training on a bucket


def _train_argv(workdir, tokenizer_dir, num_steps):
    return ["train", "--config", str(REPO / "configs" / "tiny.py"), "--workdir", workdir,
            "--config.data.tokenizer", str(tokenizer_dir), f"--config.train.num_steps={num_steps}",
            "--config.checkpoint.every_steps=1", "--config.checkpoint.keep=2",
            "--config.optimizer.schedule=constant", "--config.optimizer.warmup_steps=2", *SMALL]


def _tb_scalars(data: bytes, tag: str) -> dict[int, float]:
    """{step: value} of one scalar in a TensorBoard event file's bytes."""
    import struct

    from tensorboardX.proto import event_pb2

    out, pos = {}, 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4  # length, its crc, the event, its crc
        for value in event.summary.value:
            if value.tag == tag:
                out[event.step] = value.simple_value
    return out


def _latest_step(workdir) -> int:
    """The latest complete checkpoint step of a training workdir (0 when none)."""
    from coderl_jax.train.checkpoints import Checkpointer, has_checkpoint

    if not has_checkpoint(workdir):
        return 0
    with Checkpointer(workdir, read_only=True) as ckpt:
        return ckpt.latest_step() or 0


@pytest.mark.slow
@pytest.mark.usefixtures("gcs")
def test_train_on_a_bucket_killed_and_resumed_matches_an_uninterrupted_run(
        tokenizer_dir, tmp_path, capsys):
    """`coderl train` to gs://: killed (SIGKILL) once a checkpoint past step 2 is committed,
    then resumed; its metrics and final model equal an uninterrupted run's. (A constant
    learning rate after warm-up keeps the trajectory independent of num_steps, so the killed
    run can be given many steps: it is surely still running when killed.)"""
    from coderl_jax.checkpoint_io import load_model
    from coderl_jax.train.metrics import read_metrics

    killed = f"gs://{BUCKET}/runs/killed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = tmp_path / "killed.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "coderl_jax",
                                 *_train_argv(killed, tokenizer_dir, 500)],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None and _latest_step(killed) < 2:
                time.sleep(0.5)
            alive = proc.poll() is None
        finally:
            proc.kill()
            proc.wait()
    assert alive, "the run ended before it was killed: " + log.read_text()[-2000:]
    at_kill = _latest_step(killed)
    steps = at_kill + 2

    assert cli.main(_train_argv(killed, tokenizer_dir, steps)) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["start_step"] == at_kill and resumed["steps_run"] == 2

    straight = f"gs://{BUCKET}/runs/straight"
    assert cli.main(_train_argv(straight, tokenizer_dir, steps)) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps_run"] == steps
    a, b = read_metrics(straight), read_metrics(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, steps + 1))
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-6)
    [tb] = paths.as_path(straight).joinpath("tensorboard").iterdir()
    assert tb.name.startswith("events.out.tfevents.")
    logged = _tb_scalars(tb.read_bytes(), "train/loss")
    assert sorted(logged) == list(range(1, steps + 1))
    np.testing.assert_allclose([logged[r["step"]] for r in a], [r["loss"] for r in a],
                               rtol=1e-6)
    pa, _, _ = load_model(straight + "/model")
    pb, _, _ = load_model(killed + "/model")
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6, atol=1e-7)
    # the workdir itself is a checkpoint generate can read
    out = f"gs://{BUCKET}/runs/killed-programs.jsonl"
    assert cli.main(["generate", "--checkpoint", killed, "--tokenizer", str(tokenizer_dir),
                     "--problems", "demo", "--limit", "1", "--max-new-tokens", "2",
                     "--out", out]) == 0
    assert len(paths.as_path(out).read_text().splitlines()) == 1
