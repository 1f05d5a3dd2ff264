"""Loss terms as sums with explicit denominators, so gradient accumulation over microbatches
gives exactly the gradient of the full-batch mean."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def shift_right(targets: jax.Array, start_id: int = 0) -> jax.Array:
    """Teacher-forcing decoder inputs: [start, y_0, ..., y_{T-2}]."""
    # [b, t] -> [b, t]
    start = jnp.full(targets.shape[:-1] + (1,), start_id, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def _target_logit_and_logsumexp(logits: jax.Array, targets: jax.Array
                                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(logit of the target, logsumexp over the vocabulary, max logit), each [b, t], float32.

    Written as target logit minus logsumexp rather than a gather from log_softmax: on XLA CPU
    the gather's backward (a scatter into [b, t, vocab]) and argmax cost ~3x the matmul."""
    # [b, t, v], [b, t] -> [b, t] x 3
    logits = logits.astype(jnp.float32)
    peak = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))  # [b, t, 1]
    lse = jnp.log(jnp.exp(logits - peak).sum(axis=-1)) + peak[..., 0]
    target = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return target, lse, peak[..., 0]


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) at each position, in float32."""
    # [b, t, v], [b, t] -> [b, t]
    target, lse, _ = _target_logit_and_logsumexp(logits, targets)
    return target - lse


def token_nll_and_correct(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(-log p(target), 1 where the target is a top logit) at each position, float32."""
    # [b, t, v], [b, t] -> [b, t] x 2
    target, lse, peak = _target_logit_and_logsumexp(logits, targets)
    return lse - target, (target >= peak).astype(jnp.float32)


def cross_entropy_sum(logits: jax.Array, targets: jax.Array, mask: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
    """(sum over real tokens of -log p(target), number of real tokens predicted correctly)."""
    mask = mask.astype(jnp.float32)
    target, lse, peak = _target_logit_and_logsumexp(logits, targets)  # [b, t] x 3
    correct = (target >= peak).astype(jnp.float32)  # the target is (one of) the top logits
    return -((target - lse) * mask).sum(), (correct * mask).sum()


def policy_gradient_sum(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                        token_returns: jax.Array) -> jax.Array:
    """CodeRL's RL term, summed: -sum over real tokens of return_t * log p(token_t)."""
    mask = mask.astype(jnp.float32)
    logp = token_log_probs(logits, targets)  # [b, t]
    return -(token_returns.astype(jnp.float32) * logp * mask).sum()


def classification_sums(logits: jax.Array, labels: jax.Array, weights: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
    """(sum of weighted CE of class logits vs labels, weighted number correct)."""
    # [b, c], [b], [b]
    weights = weights.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return (nll * weights).sum(), (correct * weights).sum()
