"""Device mesh, logical-axis rules and shardings ('data', 'fsdp', 'model').

Parameters carry logical axis names ('vocab', 'embed', 'mlp', ...); one rules table
(`config.DEFAULT_LOGICAL_AXIS_RULES`) maps them to mesh axes. Shardings of the whole train state
come from its abstract shapes (`jax.eval_shape`), so nothing is materialised before it is placed.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from coderl_jax.config import DEFAULT_LOGICAL_AXIS_RULES, MeshConfig
from coderl_jax.errors import UserError

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # batch rows are split over these
DEFAULT_RULES = DEFAULT_LOGICAL_AXIS_RULES

Rules = Sequence[tuple[str, Any]]


def _fill(shape: Sequence[int], total: int, what: str) -> tuple[int, ...]:
    """Replace the (at most one) -1 in `shape` so that prod(shape) == total."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise UserError(f"{what} needs 3 entries (data, fsdp, model), got {shape}")
    if shape.count(-1) > 1:
        raise UserError(f"{what} {shape}: at most one entry may be -1")
    if any(s == 0 or s < -1 for s in shape):
        raise UserError(f"{what} {shape}: entries must be positive or -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if total % known:
            raise UserError(f"{what} {shape}: {total} devices are not divisible by {known}")
        shape = tuple(total // known if s == -1 else s for s in shape)
    if math.prod(shape) != total:
        raise UserError(f"{what} {shape} needs {math.prod(shape)} devices, have {total}")
    return shape


def mesh_shape(mesh_config: MeshConfig, num_devices: int, num_slices: int = 1
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ici, dcn) shapes with -1 filled in; dcn's -1 takes `num_slices`."""
    dcn = _fill(mesh_config.dcn_parallelism, num_slices, "dcn_parallelism") \
        if -1 in tuple(mesh_config.dcn_parallelism) else tuple(mesh_config.dcn_parallelism)
    n_dcn = math.prod(dcn)
    if num_devices % n_dcn:
        raise UserError(f"dcn_parallelism {dcn} does not divide {num_devices} devices")
    ici = _fill(mesh_config.ici_parallelism, num_devices // n_dcn, "ici_parallelism")
    return ici, dcn


def make_mesh(mesh_config: MeshConfig | None = None, devices: Sequence[Any] | None = None
              ) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh with Auto axis types over `devices` (default: all)."""
    mesh_config = mesh_config or MeshConfig()
    devices = list(jax.devices() if devices is None else devices)
    num_slices = len({getattr(d, "slice_index", 0) for d in devices})
    if num_slices == 1:
        num_slices = len({d.process_index for d in devices})  # GPU/CPU hosts act as slices
    ici, dcn = mesh_shape(mesh_config, len(devices), num_slices)
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if math.prod(dcn) == 1:
        return jax.make_mesh(ici, MESH_AXES, axis_types=axis_types, devices=devices)
    if num_slices == 1:
        # One slice/host standing in for several (tests, a single big host): consecutive blocks
        # of devices play the DCN groups, each DCN factor the outer part of its axis.
        grid = np.asarray(devices, dtype=object).reshape(tuple(dcn) + tuple(ici))
        grid = grid.transpose(0, 3, 1, 4, 2, 5).reshape([d * i for d, i in zip(dcn, ici)])
        return Mesh(grid, MESH_AXES, axis_types=axis_types)
    if num_slices != math.prod(dcn):
        raise UserError(f"dcn_parallelism {dcn} needs {math.prod(dcn)} slices/hosts, "
                        f"have {num_slices}")
    from jax.experimental import mesh_utils

    # Hybrid mesh: each DCN group is one slice (TPU) or one process (GPU/CPU hosts).
    process_is_granule = not any(hasattr(d, "slice_index") for d in devices)
    grid = mesh_utils.create_hybrid_device_mesh(
        ici, dcn, devices, process_is_granule=process_is_granule, allow_split_physical_axes=True)
    return Mesh(grid, MESH_AXES, axis_types=axis_types)


def _axes_of(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def logical_to_mesh_spec(logical: P | Sequence[str | None] | None, rules: Rules = DEFAULT_RULES,
                         *, where: str = "array") -> P:
    """One logical PartitionSpec -> mesh PartitionSpec (first free rule per name, T5X/flax order).

    An unknown logical name or a name used twice is a UserError naming `where`.
    """
    if logical is None:
        return P()
    names = tuple(logical)
    known = {name for name, _ in rules}
    for name in names:
        if name is not None and not isinstance(name, str):
            raise UserError(f"{where}: logical axis {name!r} is not a name")
        if name is not None and name not in known:
            raise UserError(f"{where}: logical axis {name!r} has no rule in logical_axis_rules")
    dups = {n for n in names if n is not None and names.count(n) > 1}
    if dups:
        raise UserError(f"{where}: logical axes {sorted(dups)} occur more than once")
    result: list[Any] = [None] * len(names)
    assigned = [False] * len(names)
    used: set[str] = set()
    for rule_name, mesh_axes in rules:
        for i, name in enumerate(names):
            if name != rule_name or assigned[i]:
                continue
            axes = _axes_of(mesh_axes)
            if used.intersection(axes):
                continue
            result[i] = mesh_axes if mesh_axes is None or isinstance(mesh_axes, str) \
                else tuple(mesh_axes)
            assigned[i] = True
            used.update(axes)
    return P(*result)


def _is_spec(x: Any) -> bool:
    return isinstance(x, P)


def _path_str(path: Sequence[Any]) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                    for k in path)


def logical_to_mesh_specs(logical_tree: Any, rules: Rules = DEFAULT_RULES) -> Any:
    """A tree of logical PartitionSpecs -> tree of mesh PartitionSpecs."""
    return jax.tree_util.tree_map_with_path(
        lambda path, spec: logical_to_mesh_spec(spec, rules, where=_path_str(path)),
        logical_tree, is_leaf=_is_spec)


def logical_to_mesh_sharding(logical_spec_tree: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES
                             ) -> Any:
    """A tree of logical PartitionSpecs -> tree of NamedSharding on `mesh`."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                        logical_to_mesh_specs(logical_spec_tree, rules), is_leaf=_is_spec)


def check_logical_axes(shapes: Any, logical_tree: Any, rules: Rules = DEFAULT_RULES) -> None:
    """Fail fast (UserError naming the parameter) when a parameter lacks logical axes.

    `shapes` is the params tree (arrays or ShapeDtypeStructs); every leaf of rank >= 1 needs a
    PartitionSpec of the same rank, each of whose names is in `rules`.
    """
    flat_shapes = {_path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(shapes)}
    flat_specs = {_path_str(p): s for p, s in
                  jax.tree_util.tree_leaves_with_path(logical_tree, is_leaf=_is_spec)}
    for name, x in flat_shapes.items():
        spec = flat_specs.get(name)
        ndim = len(np.shape(x))
        if spec is None or not isinstance(spec, P):
            if ndim == 0:
                continue
            raise UserError(f"parameter {name} (shape {tuple(np.shape(x))}) has no logical axes")
        if len(spec) != ndim:
            raise UserError(f"parameter {name}: logical axes {tuple(spec)} do not match its "
                            f"shape {tuple(np.shape(x))}")
        if ndim and all(a is None for a in spec):
            raise UserError(f"parameter {name} (shape {tuple(np.shape(x))}) has no logical axes")
        logical_to_mesh_spec(spec, rules, where=f"parameter {name}")
    extra = sorted(set(flat_specs) - set(flat_shapes))
    if extra:
        raise UserError(f"logical axes given for unknown parameter(s): {', '.join(extra[:5])}")


def param_shardings(param_shapes: Any, logical_tree: Any, mesh: Mesh,
                    rules: Rules = DEFAULT_RULES) -> Any:
    """Checked NamedShardings for a params tree, given its logical axes."""
    check_logical_axes(param_shapes, logical_tree, rules)
    shardings = logical_to_mesh_sharding(logical_tree, mesh, rules)
    # A dimension must divide evenly over its mesh axes; otherwise replicate that dimension.
    return jax.tree.map(lambda x, s: _divisible(x.shape, s), param_shapes, shardings)


def _divisible(shape: Sequence[int], sharding: NamedSharding) -> NamedSharding:
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    for i, entry in enumerate(spec):
        size = math.prod(sharding.mesh.shape[a] for a in _axes_of(entry))
        if size > 1 and shape[i] % size:
            spec[i] = None
    return NamedSharding(sharding.mesh, P(*spec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Batch rows split over data x fsdp; other dimensions replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def batch_size_divisor(mesh: Mesh) -> int:
    """The global batch must be a multiple of this (the data x fsdp size)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def host_row_range(mesh: Mesh, global_batch: int) -> tuple[int, int]:
    """[start, stop) of the global batch rows this process feeds (contiguous per host)."""
    sharding = data_sharding(mesh)
    rows = set()
    for index in sharding.addressable_devices_indices_map((global_batch,)).values():
        sl = index[0]
        rows.update(range(*sl.indices(global_batch)))
    if not rows:
        raise UserError("this process has no devices in the mesh")
    start, stop = min(rows), max(rows) + 1
    if stop - start != len(rows):
        raise UserError("this process's batch rows are not contiguous; reorder the mesh devices")
    return start, stop


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, global_batch: int | None = None
                ) -> dict[str, jax.Array]:
    """Place this process's rows of a batch on the mesh as global arrays (rows over data x fsdp).

    On one process `batch` is the whole global batch; on several it is this host's slice
    (`host_row_range`) and `global_batch` gives the total.
    """
    sharding = data_sharding(mesh)
    expected = None
    if global_batch is not None:
        start, stop = host_row_range(mesh, global_batch)
        expected = stop - start
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if expected is not None and (value.ndim == 0 or value.shape[0] != expected):
            raise UserError(f"batch array {key!r} has {value.shape[0] if value.ndim else 0} "
                            f"rows on this process; expected {expected} (global batch "
                            f"{global_batch} over {jax.process_count()} process(es))")
        global_shape = None
        if global_batch is not None:
            global_shape = (global_batch,) + value.shape[1:]
        out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out
