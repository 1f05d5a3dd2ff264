"""rl.mode=paper_faithful's RL update against an independent PyTorch re-derivation of CodeRL's
trainer (written here from reading `trainers/trainer_rl.py` and its `modeling_t5.py`): the same
tiny T5 weights (HF -> ours), the same EOS-padded unmasked batch, accumulation 4."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coderl_jax import convert, hf_config
from coderl_jax.models import t5
from coderl_jax.rl import modes
from coderl_jax.train import steps

from train_helpers import make_batch

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

M = 4  # CodeRL's --grad-acc-steps in scripts/train_actor_rl.sh


@pytest.fixture(scope="module")
def models():
    hf_t5 = transformers.T5Config(
        vocab_size=128, d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
        d_kv=8, relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.0,
        decoder_start_token_id=0, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(hf_t5).eval()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = hf_config.model_config_from_hf(model.config.to_dict(), matmul_precision="highest")
    return model, config, convert.hf_state_to_params(state, config)


def _labels(targets, mask):
    return torch.tensor(np.where(mask > 0, targets, -100), dtype=torch.long)[None]


def coderl_update(model, batch, micro_step0):
    """CodeRL's accumulated gradient and loss for one update: micro-step s (from micro_step0)
    runs `compute_loss` with `step % 2` (0: CE on the ground truth, 1: the fork's RL loss
    -(log p * reward).mean() over non -100 labels), each device one sequence, DDP averaging the
    devices (the rows of the microbatch), each micro-loss divided by M before backward."""
    model.zero_grad()
    total = 0.0
    b = len(batch["targets"])
    for i in range(M):
        rows = range(i, b, M)  # our microbatch i (steps._split_microbatches)
        micro = []
        for r in rows:
            ids = torch.tensor(batch["encoder_ids"][r], dtype=torch.long)[None]  # no mask
            if (micro_step0 + i) % 2 == 0:
                loss = model(input_ids=ids, labels=_labels(batch["gt_targets"][r],
                                                           batch["gt_target_mask"][r])).loss
            else:
                labels = _labels(batch["targets"][r], batch["target_mask"][r])
                rewards = torch.tensor(batch["token_returns"][r])[None]
                logits = model(input_ids=ids, labels=labels).logits
                logp = torch.log_softmax(logits, dim=-1)[labels != -100].unsqueeze(0)
                seq = labels[labels != -100].unsqueeze(0)
                picked = torch.gather(logp, 2, seq[:, :, None]).squeeze(-1)
                loss = -(picked * rewards[labels != -100].unsqueeze(0)).mean()
            micro.append(loss)
        loss = torch.stack(micro).mean() / M
        loss.backward()
        total += float(loss.detach())
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()
             if p.grad is not None}
    return total, grads


def _ours(config, params, batch, step):
    opts = steps.StepOptions(dropout=False, rl_mix="micro_alternate", num_microbatches=M)
    objective = steps.rl_objective(t5.T5(config), opts)
    fn = jax.jit(lambda p, b, s: steps.accumulate_gradients(objective, p, b, jax.random.key(0),
                                                            s, num_microbatches=M))
    return fn(params, {k: jnp.asarray(v) for k, v in batch.items()}, jnp.asarray(step, jnp.int32))


@pytest.mark.parametrize("step", [0, 3])
def test_paper_faithful_update_equals_coderl_micro_step_alternation(models, step):
    model, config, params = models
    raw = make_batch(11, batch=8, stage="rl")
    batch = modes.apply_to_batch(raw, "paper_faithful")
    assert batch["encoder_mask"].all()
    assert (batch["encoder_ids"][raw["encoder_mask"] == 0] == 2).all()
    want_loss, want = coderl_update(model, batch, step * M)
    want = convert.hf_state_to_params(want, config)
    grads, sums = _ours(config, params, batch, step)
    leaves, ref = jax.tree.leaves(grads), jax.tree.leaves(want)
    scale = max(float(np.abs(x).max()) for x in ref)
    assert len(leaves) == len(ref) and scale > 0
    for got, exp in zip(leaves, ref):
        np.testing.assert_allclose(np.asarray(got), exp, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(float(sums["loss"]), want_loss, rtol=1e-5)


def test_loss_normalisation_weighs_sequences_equally(models):
    """Each update's loss is the mean over micro-steps of per-sequence token means: here the
    CE / RL metrics are means over their micro-steps, and differ from the token-pooled means
    (rows of different lengths), which the `fixed` mode's normalisation would give."""
    _, config, params = models
    batch = modes.apply_to_batch(make_batch(12, batch=8, stage="rl"), "paper_faithful")
    _, sums = _ours(config, params, batch, 0)
    logits_fn = jax.jit(lambda p, e, m, y, ym: t5.T5(config).apply(
        {"params": p}, e, m, t5.shift_right(y, 0), ym))

    def nll_and_logp(rows, tkey, mkey):
        y, ym = batch[tkey][rows], batch[mkey][rows].astype(np.float32)
        logits = logits_fn(params, batch["encoder_ids"][rows], batch["encoder_mask"][rows], y,
                           batch[mkey][rows])
        logp = np.asarray(jax.nn.log_softmax(logits, -1))
        return np.take_along_axis(logp, y[..., None], -1)[..., 0], ym

    ce_rows = [r for i in (0, 2) for r in range(i, 8, M)]  # micro-steps 0 and 2: CE
    rl_rows = [r for i in (1, 3) for r in range(i, 8, M)]
    lp, ym = nll_and_logp(ce_rows, "gt_targets", "gt_target_mask")
    per_seq_ce = ((-lp * ym).sum(1) / ym.sum(1)).mean()
    pooled_ce = (-lp * ym).sum() / ym.sum()
    lp, ym = nll_and_logp(rl_rows, "targets", "target_mask")
    ret = batch["token_returns"][rl_rows]
    per_seq_rl = ((-ret * lp * ym).sum(1) / ym.sum(1)).mean()
    np.testing.assert_allclose(float(sums["ce_loss"]), per_seq_ce, rtol=1e-5)
    np.testing.assert_allclose(float(sums["rl_loss"]), per_seq_rl, rtol=1e-5)
    np.testing.assert_allclose(float(sums["loss"]), 0.5 * per_seq_ce + 0.5 * per_seq_rl,
                               rtol=1e-5)
    assert abs(pooled_ce - per_seq_ce) > 1e-3 * abs(per_seq_ce)


def test_with_one_microbatch_updates_alternate_ce_first(models):
    """With one microbatch per update the update alternates: CE at even steps, RL at odd."""
    _, config, params = models
    batch = modes.apply_to_batch(make_batch(13, batch=4, stage="rl"), "paper_faithful")
    opts = steps.StepOptions(dropout=False, rl_mix="micro_alternate", num_microbatches=1)
    objective = steps.rl_objective(t5.T5(config), opts)
    for step, kind in ((0, "ce_loss"), (1, "rl_loss"), (6, "ce_loss")):
        _, sums = steps.accumulate_gradients(objective, params, batch, jax.random.key(0),
                                             jnp.asarray(step, jnp.int32))
        other = "rl_loss" if kind == "ce_loss" else "ce_loss"
        assert float(sums[kind]) != 0.0 and float(sums[other]) == 0.0
        np.testing.assert_allclose(float(sums["loss"]), float(sums[kind]), rtol=1e-6)


def test_paper_faithful_warmup_update_equals_coderl_per_sequence_means(models):
    """CodeRL's warm-up (HF Trainer, batch 1 per device, --grad-acc-steps 4): the update's
    gradient is that of the mean over micro-batches of per-sequence token-mean CE."""
    model, config, params = models
    batch = modes.apply_to_batch(make_batch(14, batch=8), "paper_faithful")
    model.zero_grad()
    total = 0.0
    for i in range(M):
        rows = range(i, 8, M)
        micro = [model(input_ids=torch.tensor(batch["encoder_ids"][r], dtype=torch.long)[None],
                       labels=_labels(batch["targets"][r], batch["target_mask"][r])).loss
                 for r in rows]
        loss = torch.stack(micro).mean() / M
        loss.backward()
        total += float(loss.detach())
    want = convert.hf_state_to_params({n: p.grad.detach().numpy().copy()
                                       for n, p in model.named_parameters()
                                       if p.grad is not None}, config)
    opts = steps.StepOptions(dropout=False, num_microbatches=M, sequence_mean=True)
    objective = steps.actor_objective(t5.T5(config), opts)
    grads, sums = jax.jit(lambda p, b: steps.accumulate_gradients(
        objective, p, b, jax.random.key(0), jnp.asarray(0, jnp.int32), num_microbatches=M))(
        params, {k: jnp.asarray(v) for k, v in batch.items()})
    ref = jax.tree.leaves(want)
    scale = max(float(np.abs(x).max()) for x in ref)
    for got, exp in zip(jax.tree.leaves(grads), ref):
        np.testing.assert_allclose(np.asarray(got), exp, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(float(sums["loss"]), total, rtol=1e-5)
    pooled = steps.actor_objective(t5.T5(config), steps.StepOptions(dropout=False))
    _, pooled_sums = steps.accumulate_gradients(pooled, params, batch, jax.random.key(0),
                                                jnp.asarray(0, jnp.int32))
    assert abs(float(pooled_sums["loss"]) - total) > 1e-4 * total  # token-pooled differs


def _hf_adamw_steps(model, grads_per_step, lr, wd, eps, clip):
    """transformers 4.16's `AdamW` (correct_bias=True) as HF's Trainer ran it for CodeRL,
    re-derived here: gradients clipped to global norm `clip`, then per parameter
    m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2, p <- p - lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(v)+eps),
    then, for the Trainer's decay list (names without "bias"; T5 has no nn.LayerNorm),
    p <- p - lr wd p."""
    b1, b2 = 0.9, 0.999
    named = dict(model.named_parameters())
    m = {k: torch.zeros_like(p) for k, p in named.items()}
    v = {k: torch.zeros_like(p) for k, p in named.items()}
    with torch.no_grad():
        for t, grads in enumerate(grads_per_step, start=1):
            g = {k: torch.tensor(grads[k]) for k in named}
            norm = torch.sqrt(sum((x ** 2).sum() for x in g.values()))
            scale = min(1.0, clip / (float(norm) + 1e-6))
            for k, p in named.items():
                gk = g[k] * scale
                m[k].mul_(b1).add_(gk, alpha=1 - b1)
                v[k].mul_(b2).addcmul_(gk, gk, value=1 - b2)
                step = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
                p.addcdiv_(m[k], v[k].sqrt().add_(eps), value=-step)
                if "bias" not in k:
                    p.add_(p, alpha=-lr * wd)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_paper_faithful_optimizer_is_coderls_hf_adamw(models):
    """rl.mode=paper_faithful updates weights as transformers 4.16's AdamW with HF Trainer's
    decay list (the layer-norm scales and the embedding decay, relative_attention_bias does not),
    to 1e-6 after 3 clipped steps of the same gradients; optax's rule differs."""
    import copy

    from coderl_jax.config import OptimizerConfig
    from coderl_jax.train.run import base_config, run_config
    from coderl_jax.train.state import make_optimizer

    model, config, params = models
    model = copy.deepcopy(model)
    cfg = base_config("tiny", "warmup")
    cfg.rl.mode = "paper_faithful"
    assert run_config(cfg).optimizer.rule == "hf_adamw"
    # eps and decay large enough for their placement to show above the tolerance
    lr, wd, eps, clip = 1e-2, 0.5, 1e-3, 1.0
    rng = np.random.default_rng(0)
    named = dict(model.named_parameters())
    ptr = {p.data_ptr(): k for k, p in named.items()}
    state = model.state_dict()
    steps_grads = [{k: rng.normal(size=p.shape).astype(np.float32) for k, p in named.items()}
                   for _ in range(3)]
    want = _hf_adamw_steps(model, steps_grads, lr, wd, eps, clip)

    def ours(rule):
        opt = OptimizerConfig(learning_rate=lr, weight_decay=wd, eps=eps, grad_clip_norm=clip,
                              schedule="constant", rule=rule)
        tx, _ = make_optimizer(opt, 3)
        p = params
        s = tx.init(p)
        for grads in steps_grads:
            g = convert.hf_state_to_params(
                {k: grads[ptr[t.data_ptr()]] for k, t in state.items()}, config)
            updates, s = tx.update(g, s, p)
            p = jax.tree.map(lambda a, u: a + u, p, updates)
        return p

    expected = convert.hf_state_to_params(want, config)
    got = ours("hf_adamw")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got,
                 expected)
    other = ours("optax")
    assert max(float(np.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(other), jax.tree.leaves(expected))) > 1e-4
