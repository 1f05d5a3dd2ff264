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


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target) at each position, in float32."""
    # [b, t, v], [b, t] -> [b, t]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def cross_entropy_sum(logits: jax.Array, targets: jax.Array, mask: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
    """(sum over real tokens of -log p(target), number of real tokens predicted correctly)."""
    mask = mask.astype(jnp.float32)
    logp = token_log_probs(logits, targets)  # [b, t]
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)  # [b, t]
    return -(logp * mask).sum(), (correct * mask).sum()


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
