"""Mesh construction, the logical-axis rules, sharding checks and batch placement."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from coderl_jax import partitioning
from coderl_jax.config import MeshConfig
from coderl_jax.errors import UserError


def test_mesh_fills_the_minus_one_and_uses_auto_axes():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(-1, 2, 2)))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "model": 2}
    assert mesh.axis_names == ("data", "fsdp", "model")
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(1, -1, 1)), jax.devices()[:4])
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "model": 1}


def test_mesh_with_dcn_multiplies_ici():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(1, 2, 2), dcn_parallelism=(2, 1, 1)))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "model": 2}
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
    # the DCN factor is the outer one: each data index is one block of 4 devices (one "slice")
    assert sorted(d.id for d in mesh.devices[0].flat) == [0, 1, 2, 3]


@pytest.mark.parametrize("ici,message", [((-1, -1, 1), "at most one"),
                                         ((3, -1, 1), "not divisible"),
                                         ((2, 2, 1), "needs 4 devices"),
                                         ((2, 0, 1), "positive"),
                                         ((8, 1), "3 entries")])
def test_bad_mesh_shapes_are_user_errors(ici, message):
    with pytest.raises(UserError, match=message):
        partitioning.make_mesh(MeshConfig(ici_parallelism=ici))


def test_rules_map_parameters_and_activations():
    spec = partitioning.logical_to_mesh_spec
    assert spec(P("embed", "mlp")) == P("fsdp", "model")
    assert spec(P("vocab", "embed")) == P("model", "fsdp")
    assert spec(P("mlp", "embed")) == P("model", "fsdp")
    assert spec(P("embed", "heads", "kv")) == P("fsdp", "model", None)
    # activations: batch takes (data, fsdp), so embed falls through to replicated
    assert spec(P("batch", "length", "embed")) == P(("data", "fsdp"), None, None)
    assert spec(P("batch", "length", "vocab")) == P(("data", "fsdp"), None, "model")
    # two names wanting the model axis: the first rule in the table wins, the other replicates
    assert spec(P("vocab", "mlp")) == P("model", None)
    assert spec(P("relpos_buckets", "heads")) == P(None, "model")


def test_unknown_or_repeated_logical_names_are_user_errors():
    with pytest.raises(UserError, match="'hidden' has no rule"):
        partitioning.logical_to_mesh_spec(P("embed", "hidden"), where="w")
    with pytest.raises(UserError, match="more than once"):
        partitioning.logical_to_mesh_spec(P("embed", "embed"))


def test_parameter_without_logical_axes_fails_fast_naming_it():
    shapes = {"dense": {"kernel": jax.ShapeDtypeStruct((4, 8), jnp.float32)},
              "norm": {"scale": jax.ShapeDtypeStruct((4,), jnp.float32)}}
    good = {"dense": {"kernel": P("embed", "mlp")}, "norm": {"scale": P("embed")}}
    partitioning.check_logical_axes(shapes, good)
    with pytest.raises(UserError, match="parameter norm/scale .* has no logical axes"):
        partitioning.check_logical_axes(shapes, {"dense": good["dense"], "norm": {}})
    with pytest.raises(UserError, match="parameter norm/scale .* has no logical axes"):
        partitioning.check_logical_axes(shapes, {"dense": good["dense"],
                                                 "norm": {"scale": P(None)}})
    with pytest.raises(UserError, match="dense/kernel: logical axes .* do not match"):
        partitioning.check_logical_axes(shapes, {"dense": {"kernel": P("embed")},
                                                 "norm": good["norm"]})


def test_t5_params_all_have_logical_axes():
    from coderl_jax.config import CriticConfig
    from coderl_jax.models import critic, t5

    from train_helpers import TINY

    shapes = jax.eval_shape(lambda: t5.init_params(TINY, jax.random.key(0)))
    partitioning.check_logical_axes(shapes, t5.param_logical_axes(TINY))
    cshapes = jax.eval_shape(lambda: critic.init_critic_params(TINY, CriticConfig(),
                                                               jax.random.key(0)))
    partitioning.check_logical_axes(cshapes, critic.critic_logical_axes(TINY, CriticConfig()))


def test_indivisible_dimension_is_replicated():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(1, 2, 4)))
    shapes = {"w": jax.ShapeDtypeStruct((6, 10), jnp.float32)}
    sh = partitioning.param_shardings(shapes, {"w": P("embed", "vocab")}, mesh)
    assert sh["w"].spec == P("fsdp", None)  # 10 does not split 4 ways


def test_shard_batch_places_rows_over_data_and_fsdp():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(2, 2, 2)))
    batch = {"x": np.arange(8 * 3, dtype=np.int32).reshape(8, 3)}
    out = partitioning.shard_batch(batch, mesh)["x"]
    assert out.shape == (8, 3)
    np.testing.assert_array_equal(np.asarray(out), batch["x"])
    assert out.sharding.spec == P(("data", "fsdp"))
    assert {s.data.shape for s in out.addressable_shards} == {(2, 3)}
    assert partitioning.host_row_range(mesh, 8) == (0, 8)
    assert partitioning.batch_size_divisor(mesh) == 4


def test_shard_batch_checks_this_process_rows():
    mesh = partitioning.make_mesh(MeshConfig(ici_parallelism=(8, 1, 1)))
    with pytest.raises(UserError, match="has 4 rows on this process; expected 8"):
        partitioning.shard_batch({"x": np.zeros((4, 2), np.int32)}, mesh, global_batch=8)
