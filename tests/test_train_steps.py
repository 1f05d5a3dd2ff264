"""Train steps: mesh-invariant loss trajectories, exact gradient accumulation, and the actor /
critic / RL gradients against direct computations of their formulas on a tiny model."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from coderl_jax import partitioning
from coderl_jax.config import CriticConfig, MeshConfig, OptimizerConfig
from coderl_jax.errors import UserError
from coderl_jax.models import t5
from coderl_jax.models.critic import T5Critic, init_critic_params
from coderl_jax.train import state as st, steps

from train_helpers import TINY, make_batch, mesh_devices

N_STEPS = 3


def trajectory(ici, num_microbatches=1, dropout=False, config=TINY):
    """Per-step (loss, grad norm) and final state of N_STEPS actor steps on an `ici` mesh."""
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=ici), mesh_devices(ici))
    tx, schedule = st.make_optimizer(OptimizerConfig(learning_rate=1e-2, warmup_steps=1), 10)
    state, shardings = st.create_train_state(functools.partial(t5.init_params, config),
                                             t5.param_logical_axes(config), tx, mesh,
                                             jax.random.key(0))
    opts = steps.StepOptions(num_microbatches=num_microbatches, dropout=dropout)
    step = steps.make_train_step(steps.actor_objective(t5.T5(config), opts), tx, schedule, opts,
                                 mesh, shardings)
    out = []
    for i in range(N_STEPS):
        batch = partitioning.shard_batch(make_batch(i), mesh)
        state, metrics = step(state, batch, jax.random.fold_in(jax.random.key(1), i))
        out.append([float(metrics["loss"]), float(metrics["grad_norm"])])
    assert int(state.step) == N_STEPS
    return np.array(out), state


def _assert_same_run(got, want):
    (traj, state), (ref_traj, ref_state) = got, want
    np.testing.assert_allclose(traj, ref_traj, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)),
                    jax.tree.leaves(jax.device_get(ref_state.params))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def reference():
    ref = trajectory((1, 1, 1))
    assert ref[0][-1, 0] < ref[0][0, 0]  # the loss moves: the comparison is not vacuous
    return ref


def test_trajectory_on_8x1x1_equals_1_device_with_dropout():
    """Dropout on: 8 devices draw the same masks as 1 (partitionable threefry), same run."""
    want = trajectory((1, 1, 1), dropout=True)
    _assert_same_run(trajectory((8, 1, 1), dropout=True), want)


def test_trajectory_on_2x2x2_with_microbatches_equals_1_device(reference):
    """Data, fsdp and model axes all > 1, and 2 accumulated microbatches: same run."""
    got = trajectory((2, 2, 2), num_microbatches=2)
    _assert_same_run(got, reference)
    # parameters really are sharded as the rules say: embedding [vocab, embed] -> (model, fsdp)
    emb = got[1].params["token_embedder"]["embedding"]
    assert emb.sharding.spec == partitioning.logical_to_mesh_spec(("vocab", "embed"))
    assert emb.sharding.spec == jax.sharding.PartitionSpec("model", "fsdp")
    assert emb.addressable_shards[0].data.shape == (TINY.vocab_size // 2, TINY.d_model // 2)


@pytest.mark.slow
def test_bfloat16_compute_with_remat_tracks_float32(reference):
    """bfloat16 activations (float32 params, optimizer and loss) and rematerialised layers:
    the same run within bfloat16 precision."""
    import dataclasses

    config = dataclasses.replace(TINY, dtype="bfloat16", remat=True)
    traj, state = trajectory((2, 2, 2), config=config)
    assert jax.tree.leaves(state.params)[0].dtype == jnp.float32
    np.testing.assert_allclose(traj[:, 0], reference[0][:, 0], rtol=2e-2)


# ----------------------------------------------------------------- gradients vs formulas


def _grads(objective, params, batch, step=0, m=1):
    fn = _jitted_grads(objective, m)
    return fn(params, {k: jnp.asarray(v) for k, v in batch.items()}, jax.random.key(0),
              jnp.asarray(step, jnp.int32))


@functools.lru_cache(maxsize=None)
def _jitted_grads(objective, m):
    return jax.jit(functools.partial(steps.accumulate_gradients, objective, num_microbatches=m))


def _assert_tree_close(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    scale = max(float(jnp.abs(x).max()) for x in leaves_b)
    assert scale > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * scale)


def _logp(logits, targets):
    """Direct log p(target): the target's logit minus logsumexp."""
    lse = jax.scipy.special.logsumexp(logits, axis=-1)
    return jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - lse


def _actor_logits(params, enc, enc_mask, targets, target_mask):
    return t5.T5(TINY).apply({"params": params}, enc, enc_mask, t5.shift_right(targets, 0),
                             target_mask)


@jax.jit
@functools.partial(jax.value_and_grad)
def direct_ce(params, enc, enc_mask, targets, target_mask):
    """Token cross-entropy, mean over real target tokens."""
    logits = _actor_logits(params, enc, enc_mask, targets, target_mask)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [b, t]
    return (ce * target_mask).sum() / target_mask.sum()


@jax.jit
@functools.partial(jax.value_and_grad)
def direct_pg(params, enc, enc_mask, targets, target_mask, returns):
    """CodeRL's RL term: -(mean over real tokens of return * log p(token))."""
    logp = _logp(_actor_logits(params, enc, enc_mask, targets, target_mask), targets)
    return -(returns * logp * target_mask).sum() / target_mask.sum()


@pytest.fixture(scope="module")
def actor_params():
    return t5.init_params(TINY, jax.random.key(3))


def test_actor_gradient_is_masked_token_mean_of_cross_entropy(actor_params):
    b = make_batch(7)
    objective = steps.actor_objective(t5.T5(TINY), steps.StepOptions(dropout=False))
    loss, want = direct_ce(actor_params, b["encoder_ids"], b["encoder_mask"], b["targets"],
                           b["target_mask"])
    grads, sums = _grads(objective, actor_params, b)
    _assert_tree_close(grads, want)
    np.testing.assert_allclose(float(sums["loss"]), float(loss), rtol=1e-5)


def test_rl_gradient_matches_coderl_formula(actor_params):
    """rl_mix="sum": w_rl * RL + w_ce * CE(ground truth); "alternate": RL on even steps, CE on
    odd ones; both with accumulation over microbatches."""
    model = t5.T5(TINY)
    b = make_batch(8, stage="rl")
    w_rl, w_ce = 0.7, 0.3
    rl, g_rl = direct_pg(actor_params, b["encoder_ids"], b["encoder_mask"], b["targets"],
                         b["target_mask"], b["token_returns"])
    ce, g_ce = direct_ce(actor_params, b["encoder_ids"], b["encoder_mask"], b["gt_targets"],
                         b["gt_target_mask"])
    summed = steps.rl_objective(model, steps.StepOptions(dropout=False, rl_weight=w_rl,
                                                         ce_weight=w_ce))
    grads, sums = _grads(summed, actor_params, b, m=2)
    _assert_tree_close(grads, jax.tree.map(lambda a, c: w_rl * a + w_ce * c, g_rl, g_ce))
    np.testing.assert_allclose(float(sums["loss"]), w_rl * float(rl) + w_ce * float(ce),
                               rtol=1e-5)
    np.testing.assert_allclose(float(sums["rl_loss"]), float(rl), rtol=1e-5)
    alternate = steps.rl_objective(model, steps.StepOptions(dropout=False, rl_mix="alternate"))
    grads, sums = _grads(alternate, actor_params, b, step=4)
    _assert_tree_close(grads, g_rl)
    grads, sums = _grads(alternate, actor_params, b, step=5)
    _assert_tree_close(grads, g_ce)
    np.testing.assert_allclose(float(sums["loss"]), float(ce), rtol=1e-5)


@pytest.mark.parametrize("num_classes,pool_padding",
                         [(4, False), pytest.param(2, True, marks=pytest.mark.slow)])
def test_critic_gradient_matches_max_pooled_cross_entropy(num_classes, pool_padding):
    critic_cfg = CriticConfig(num_classes=num_classes)
    model = T5Critic(TINY, critic_cfg)
    params = init_critic_params(TINY, critic_cfg, jax.random.key(4))
    b = make_batch(10, stage="critic")
    b["labels"] = b["labels"] % num_classes
    b["valid"][-3:] = 0  # padding rows count for nothing
    opts = steps.StepOptions(dropout=False, critic_pool_padding=pool_padding)
    objective = steps.critic_objective(model, opts)

    @jax.jit
    @jax.value_and_grad
    def direct(p):
        _, token_logits = model.apply({"params": p}, b["encoder_ids"], b["encoder_mask"],
                                      t5.shift_right(b["targets"], 0), b["target_mask"])
        if pool_padding:  # CodeRL: max over every decoder position
            pooled = token_logits.max(axis=1)
        else:
            real = b["target_mask"][:, :, None] > 0
            pooled = jnp.where(real, token_logits, -jnp.inf).max(axis=1)  # [b, C]
        logp = jax.nn.log_softmax(pooled, axis=-1)
        nll = -logp[jnp.arange(len(b["labels"])), b["labels"]]
        valid = b["valid"].astype(jnp.float32)
        return (nll * valid).sum() / valid.sum()

    loss, want = direct(params)
    grads, sums = _grads(objective, params, b, m=2)
    _assert_tree_close(grads, want)
    np.testing.assert_allclose(float(sums["loss"]), float(loss), rtol=1e-5)
    assert 0.0 <= float(sums["accuracy"]) <= 1.0


def test_batch_checks_are_user_errors():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(8, 1, 1)), mesh_devices((8, 1, 1)))
    tx, schedule = st.make_optimizer(OptimizerConfig(), 10)
    _, shardings = st.create_train_state(functools.partial(t5.init_params, TINY),
                                         t5.param_logical_axes(TINY), tx, mesh, jax.random.key(0))
    opts = steps.StepOptions(num_microbatches=4)
    step = steps.make_train_step(steps.actor_objective(t5.T5(TINY), opts), tx, schedule, opts,
                                 mesh, shardings)
    b = make_batch(0)
    with pytest.raises(UserError, match="lacks targets"):
        step(None, {k: v for k, v in b.items() if k != "targets"}, jax.random.key(0))
    with pytest.raises(UserError, match="microbatch size 4 is not divisible"):
        step(None, b, jax.random.key(0))
    with pytest.raises(UserError, match="rl_mix"):
        steps.rl_objective(t5.T5(TINY), steps.StepOptions(rl_mix="both"))
