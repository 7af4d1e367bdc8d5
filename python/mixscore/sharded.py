"""Training sets sharded over a Dask cluster, with the same exact answers as one machine.

``EmpiricalScore``, ``NearestIndex`` and ``nearest`` accept, in place of an (N, D) array,

* a ``dask.array`` of shape (N, D) (each row chunk is a shard; column chunks are joined), or
* a list of shards: (n_j, D) arrays or paths of .npy files (read by the workers, so the files
  must be reachable from them).

Each shard is prepared once, on a worker, into an ordinary single-shard model
(``EmpiricalScore(shard, row_offset=a)`` or ``NearestIndex(shard, row_offset=a)``) and kept
there (``dask.persist``). A call sends the queries out, every shard returns its partial state
(``mixscore.partial``: running minimum, float64 sums about the best point, global indices, or
its exact top-k) and the partials are merged on the workers in a fixed tree: groups of
``SPLIT_EVERY`` consecutive shards, left to right, level by level (like ``dask.array.reduction``
with a fixed ``split_every``). The tree depends only on the chunk layout, never on the number
of workers or the order in which tasks finish, so the same layout gives the same bits; and
since the merge is exact, the statistics equal the single-process ones (1e-12 relative in
float64, identical argmax, nearest distances and indices bit for bit; see ``mixscore.partial``).

A worker holds its shards (the engine keeps the shard and a centred copy) plus O(M D) for the
queries and partials. If a worker dies, Dask recomputes its shard models from the graph (the
array's chunks or the .npy files) on another worker and reruns the lost tasks; if it gives up
(``distributed.scheduler.allowed-failures``), the call raises; never a partial answer.

Computations run on Dask's current scheduler: the default ``dask.distributed`` client (a
``LocalCluster`` or ``Client("tcp://scheduler:8786")``) when there is one, else Dask's local
threads. Needs ``pip install "mixscore[dask]"``; ``import mixscore`` does not import Dask.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from .backends.base import PARTIAL, STATS
from .partial import merge

SPLIT_EVERY = 8  # partials merged per task of the fixed merge tree


def _is_dask_array(a) -> bool:
    mod = sys.modules.get("dask.array")  # a Dask array exists only once dask.array is imported
    return mod is not None and isinstance(a, mod.Array)


def is_sharded(train) -> bool:
    """Whether ``train`` is a sharded training set: a Dask array, or a non-empty list/tuple of
    2-d arrays or .npy paths (a list of rows is an ordinary array, not shards)."""
    if _is_dask_array(train):
        return True
    if isinstance(train, (list, tuple)) and len(train) > 0:
        shard = [isinstance(s, (str, os.PathLike)) or getattr(s, "ndim", None) == 2
                 for s in train]
        if any(shard) and not all(shard):
            j = shard.index(False)
            raise ValueError(f"train: a list of shards needs every item to be a 2-d array or a "
                             f".npy path; item {j} is {_describe_item(train[j])}")
        return all(shard)
    return False


def _describe_item(s) -> str:
    shape = getattr(s, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else repr(s)[:60]


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise ImportError(
            "a sharded training set (a Dask array or a list of shards) needs "
            'Dask: pip install "mixscore[dask]"'
        ) from None
    return dask, da


def _npy_piece(path, j: int, name: str):
    dask, da = _dask()
    path = os.fspath(path)
    try:
        head = np.load(path, mmap_mode="r")  # reads the header only
    except (OSError, ValueError) as e:
        raise ValueError(f"{name}[{j}]: cannot read {path!r} as a .npy file ({e})") from None
    return da.from_delayed(dask.delayed(np.load, pure=True)(path), head.shape, head.dtype)


def as_dask_train(train, dtype=None, name: str = "train"):
    """The training set as an (N, D) Dask array with one column chunk, in the compute dtype
    (float32 and float64 kept, float16 to float32, integers and booleans to float64, or
    ``dtype``). Values (NaN/Inf) are checked per shard on the workers."""
    dask, da = _dask()
    if not _is_dask_array(train):
        pieces = []
        for j, s in enumerate(train):
            p = (
                _npy_piece(s, j, name)
                if isinstance(s, (str, os.PathLike))
                else (s if _is_dask_array(s) else da.from_array(np.asarray(s), chunks=np.shape(s)))
            )
            if pieces and p.shape[1] != pieces[0].shape[1]:
                raise ValueError(
                    f"{name}[{j}] has {p.shape[1]} columns, {name}[0] has "
                    f"{pieces[0].shape[1]}; every shard must have the same D"
                )
            pieces.append(p)
        train = da.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
    shape = f"shape {train.shape} and dtype {train.dtype}"
    if train.ndim != 2:
        raise ValueError(f"{name} must be 2-d (points x dimensions), got {shape}")
    if train.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got {shape}")
    if any(np.isnan(c) for c in train.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes ({shape}); call {name}.compute_chunk_sizes() first"
        )
    if train.shape[0] == 0 or train.shape[1] == 0:
        raise ValueError(f"{name} is empty ({shape}); expected at least one row and column")
    if dtype is None:
        dtype = (
            train.dtype
            if train.dtype in (np.float32, np.float64)
            else (np.float32 if train.dtype == np.float16 else np.float64)
        )
    if train.dtype != dtype:
        train = train.astype(dtype)
    return train.rechunk({1: -1}) if train.numblocks[1] != 1 else train


def tree_merge(parts: Sequence, combine: Callable | None = None, split_every: int = SPLIT_EVERY):
    """Merge partial states in the fixed tree: groups of ``split_every`` consecutive items,
    left to right, level by level. ``combine(group)`` merges one group (default
    ``mixscore.merge``, i.e. locally); the sharded models pass a Dask task."""
    combine = merge if combine is None else combine
    items = list(parts)
    if not items:
        raise ValueError("tree_merge needs at least one partial state")
    while len(items) > 1:
        items = [
            combine(items[i : i + split_every]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), split_every)
        ]
    return items[0]


def _merge_task(*parts):
    return merge(parts)


def _nbytes(obj) -> int:
    """Bytes of the NumPy arrays a shard model holds (its attributes and theirs, each array
    once): what ``dask.sizeof`` reports, so the scheduler runs tasks where the model is
    instead of copying it (by default it would count a few hundred bytes)."""
    seen, total, todo = set(), 0, [(obj, 0)]
    while todo:
        o, depth = todo.pop()
        values = o.values() if isinstance(o, dict) else getattr(o, "__dict__", {}).values()
        for v in values:
            if isinstance(v, np.ndarray) and id(v) not in seen:
                seen.add(id(v))
                total += v.nbytes
            elif depth < 2 and (isinstance(v, dict) or hasattr(v, "__dict__")):
                todo.append((v, depth + 1))
    return total


def _register_sizeof() -> None:
    from dask.sizeof import sizeof

    from .empirical import EmpiricalScore
    from .nearest import NearestIndex

    for cls in (EmpiricalScore, NearestIndex):
        sizeof.register(cls)(_nbytes)


def _build_shard(kind: str, block, weights, offset: int, index: int, options: dict):
    """Runs on a worker: one shard's single-machine model, with errors naming the shard."""
    from .empirical import EmpiricalScore
    from .nearest import NearestIndex

    _register_sizeof()
    try:
        if kind == "score":
            return EmpiricalScore(
                block,
                options["schedule"],
                weights,
                backend=options["backend"],
                refine=options["refine"],
                num_threads=options["num_threads"],
                row_offset=offset,
            )
        return NearestIndex(
            block,
            backend=options["backend"],
            num_threads=options["num_threads"],
            name=options["name"],
            row_offset=offset,
        )
    except (ValueError, TypeError) as e:
        raise type(e)(
            f"shard {index} (global rows {offset}..{offset + len(block) - 1}): {e}"
        ) from None


def _score_partial(model, x, alpha, sigma2):
    return model.backend.partial(x, alpha, sigma2)


def _raise_first_error(persisted) -> None:
    """Wait until persisted shard models are built; raise the first shard's error (bad values,
    an unreadable file) now rather than at the first call. No data comes back."""
    try:
        from distributed import futures_of, wait
    except ImportError:  # Dask's local schedulers persist synchronously
        return
    futures = futures_of(persisted)
    if not futures:  # Dask's local schedulers (no client): built already
        return
    wait(futures)
    for f in futures:
        if f.status == "error":
            f.result()


def _homes(n: int) -> list[dict]:
    """Where each of n shards is prepared: with a ``dask.distributed`` client, consecutive
    shards in equal runs on its workers (an even spread by design, and each merge group mostly
    on one worker); Dask may still move a shard when a worker dies (allow_other_workers)."""
    try:
        from distributed import get_client

        workers = sorted(get_client().ncores())
    except (ImportError, ValueError):  # no distributed client: Dask's local scheduler
        workers = []
    if not workers:
        return [{}] * n
    return [
        {"workers": [workers[j * len(workers) // n]], "allow_other_workers": True} for j in range(n)
    ]


class Shards:
    """The shard models of one training set, persisted where Dask runs them, and the fixed
    map-and-merge over them."""

    def __init__(self, kind: str, train, weights, row_offset: int, options: dict):
        dask, _ = _dask()
        self.train = train
        sizes = [int(c) for c in train.chunks[0]]
        self.offsets = row_offset + np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        build = dask.delayed(_build_shard, pure=False)
        blocks = train.to_delayed().ravel()
        self.homes = homes = _homes(len(blocks))
        models = []
        for j, block in enumerate(blocks):
            a, b = int(self.offsets[j]), int(self.offsets[j + 1])
            w = None if weights is None else weights[a - row_offset : b - row_offset]
            with dask.annotate(**homes[j]):
                models.append(build(kind, block, w, a, j, options))
        self.models = dask.persist(*models)  # prepared once, kept on the workers
        _raise_first_error(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def map_merge(self, fn: Callable, *args):
        """``fn(model, *args)`` on every shard, tree-merged on the workers; the merged partial
        state comes back."""
        dask, _ = _dask()
        args = [dask.delayed(a, pure=False) if isinstance(a, np.ndarray) else a for a in args]
        task = dask.delayed(fn, pure=False)
        parts = []
        for m, home in zip(self.models, self.homes, strict=True):
            with dask.annotate(**home):  # where the model is: never copy it to run a task
                parts.append(task(m, *args))
        merged = tree_merge(parts, lambda g: dask.delayed(_merge_task, pure=False)(*g))
        return dask.compute(merged)[0]


class DaskScoreBackend:
    """The score backend of a sharded training set (capabilities ``stats`` and ``partial``):
    stats = finalize(tree merge of the shards' partial states). The sampler runs its Python
    loop over it with the same Philox noise as every other path."""

    name = "dask"
    capabilities = frozenset({STATS, PARTIAL})

    def __init__(
        self,
        train,
        weights,
        schedule,
        *,
        backend: str = "auto",
        refine: str = "auto",
        num_threads: int = 0,
        row_offset: int = 0,
    ):
        if backend == "dask":
            backend = "auto"
        self.dtype = train.dtype
        self.shards = Shards(
            "score",
            train,
            weights,
            row_offset,
            {
                "schedule": schedule,
                "backend": backend,
                "refine": refine,
                "num_threads": num_threads,
            },
        )

    def partial(self, x, alpha, sigma2):
        return self.shards.map_merge(_score_partial, x, alpha, sigma2)

    def stats(self, x, alpha, sigma2, want):
        return self.partial(x, alpha, sigma2).finalize(want)


__all__ = ["is_sharded", "as_dask_train", "tree_merge", "Shards", "DaskScoreBackend", "SPLIT_EVERY"]
