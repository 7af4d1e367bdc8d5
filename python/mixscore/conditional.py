"""Conditional scores (memorization paper Thm 6.4, corrected in SCIENCE.md section 4):
s(x, y, t) is the unconditional formula restricted to the training points with label y, with
the weights normalized over that group only.

``EmpiricalScore(X, schedule, labels=y)`` keeps the labels; ``stats / score / denoise(x, t,
y=...)`` with one label, or one per query, evaluate each label's group with its own prepared
sub-model (built once, on first use). ``argmax`` is reported as an index of the full training
set.
"""

from __future__ import annotations

import numpy as np

from .backends import _xp


def check_labels(labels, n: int) -> np.ndarray:
    """Labels (N,), one per training point, of any hashable NumPy kind (ints, strings)."""
    arr = host_labels(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"labels must have shape ({n},) (one per training point), got shape {arr.shape}"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("labels contains NaN or Inf")
    return arr


def host_labels(labels) -> np.ndarray:
    """Labels as a NumPy array (a torch / CuPy array of labels is copied to the host)."""
    return _xp.to_host(labels) if _xp.is_foreign(labels) else np.asarray(labels)


class LabelGroups:
    """The training points of each label and their prepared sub-models (lazily built)."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.values, inverse = np.unique(labels, return_inverse=True)
        self.index = [np.flatnonzero(inverse == k) for k in range(self.values.size)]
        self._models: dict[int, object] = {}

    def group_of(self, label) -> int:
        k = int(np.searchsorted(self.values, label))
        if k >= self.values.size or self.values[k] != label:
            shown = [v.item() for v in self.values[:10]] + (
                ["..."] if self.values.size > 10 else []
            )
            raise ValueError(
                f"y: label {np.asarray(label).item()!r} has no training points; "
                f"the labels are {shown}"
            )
        return k

    def model(self, parent, k: int):
        if k not in self._models:
            idx = self.index[k]
            self._models[k] = parent.subset(idx)
        return self._models[k]

    def query_groups(self, y, m: int):
        """[(group k, query rows)] for y a single label or one label per query (M,)."""
        arr = host_labels(y)
        if arr.ndim == 0:
            return [(self.group_of(arr[()]), np.arange(m))]
        if arr.shape != (m,):
            raise ValueError(
                f"y must be one label or one per query, shape ({m},); got shape {arr.shape}"
            )
        vals, inv = np.unique(arr, return_inverse=True)
        return [(self.group_of(v), np.flatnonzero(inv == j)) for j, v in enumerate(vals)]


def by_label(parent, y, m: int, evaluate) -> dict:
    """Run ``evaluate(sub_model, rows) -> dict`` on each label's queries and assemble the
    outputs in query order; ``argmax`` and ``draws`` are mapped to indices of the full set.
    Outputs of a model kept on a device (torch / CuPy) are assembled there."""
    groups = parent.label_groups
    if groups is None:
        raise ValueError(
            "y= needs a model built with labels= (EmpiricalScore(X, schedule, labels=...))"
        )
    found, order = [], []
    for k, rows in groups.query_groups(y, m):
        res = evaluate(groups.model(parent, k), rows)
        for name in ("argmax", "draws"):
            if name in res:
                res[name] = _to_parent(res[name], groups.index[k]) + parent.row_offset
        found.append(res)
        order.append(rows)
    inverse = np.argsort(np.concatenate(order), kind="stable")  # group order -> query order
    return {name: join_rows([res[name] for res in found], inverse) for name in found[0]}


def take_rows(a, rows: np.ndarray, axis: int = 0):
    """The rows ``rows`` (host integer indices) of ``a`` along ``axis``, NumPy or an array
    kept on a device."""
    if not _xp.is_foreign(a):
        return np.take(np.asarray(a), rows, axis=axis)
    xp, device = _xp.namespace(a)
    return xp.take(a, _xp.place_like(rows, xp, device, xp.int64), axis=axis)


def _to_parent(local, index: np.ndarray):
    """Indices into a label's sub-model (any shape; NumPy or an array kept on a device) as
    indices into the parent's training set (``index``: the label's rows of the parent)."""
    if not _xp.is_foreign(local):
        return index[np.asarray(local)]
    xp, device = _xp.namespace(local)
    flat = xp.take(_xp.place_like(index, xp, device, xp.int64), xp.reshape(local, (-1,)))
    return xp.reshape(flat, tuple(local.shape))


def join_rows(parts: list, inverse: np.ndarray, axis: int = 0):
    """The groups' outputs ``parts`` (NumPy or one device library) joined along ``axis`` and
    put back in query order (``inverse``: group order -> query order)."""
    if len(parts) == 1:  # one label: its rows are all the queries, in order
        return parts[0]
    if not _xp.is_foreign(parts[0]):
        return take_rows(np.concatenate([np.asarray(p) for p in parts], axis=axis), inverse, axis)
    xp, _ = _xp.namespace(parts[0])
    return take_rows(xp.concat(parts, axis=axis), inverse, axis)
