"""The CUDA backend (``backend="cuda"``): the posterior pass of ``mixscore._cuda``
(cuda/posterior.cu) on CuPy arrays or CUDA torch tensors, without host copies.

The preparation (training mean, float32 centred copy, norms), the per-query set-up and the
finalization are those of the array-API backend (``arrayapi.py``), run in the input's library
on the GPU; only the pass over the training set is the compiled kernel, given raw device
pointers (``__cuda_array_interface__`` / ``data_ptr``) and the library's current stream.

The kernels have been compiled, and their logic is tested on the CPU through a stand-in of the
CUDA runtime (tests/test_cuda_host.py, docs/gpu.md), but they have never run on a GPU in
development (no GPU was available): tests/test_gpu.py checks them against the CPU engine and
the float64 reference where a GPU is.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import _xp
from .arrayapi import _CUTOFF_NATS, ArrayApiBackend, expansion_bound
from .base import COV_NOISE, DRAWS, FUSED_SAMPLE

# The CPU engine's refinement rule (cpp/include/mixscore/engine.hpp, EngineOptions):
# tol = refine_tol, cap = approx_cap, dom = dominant_gap, budget = refine_budget (nats).
_ENGINE_RULE = {"tol": 1e-9, "cap": 0.05, "dom": 6.0, "budget": 16}
# per-query float64 sums the kernels return (with s1 and s1_light, (M, D))
_SCALAR_SUMS = ("s0", "sum_w2", "s2", "s0_light", "s2_light")
# The logits products (EmpiricalScore's ``products``); index - 1 is the kernels' Products.
PRODUCTS = ("auto", "float32", "float64", "3xtf32")
# One chunk of queries' logits (at least 128 queries): the memory stays O((M + N) D) plus
# this constant. Tests lower it to exercise the chunking.
_WORKSPACE_BYTES = 1 << 29

NOT_BUILT = (
    "the mixscore._cuda extension was not built: no CUDA compiler (nvcc) was found when "
    "mixscore was installed (or it was built with MIXSCORE_CUDA=OFF). Put nvcc on PATH (or set "
    "CUDACXX) and reinstall"
)
NO_DEVICE = (
    "mixscore._cuda is built, but no CUDA device is visible (check nvidia-smi and "
    "CUDA_VISIBLE_DEVICES)"
)
NO_LIBRARY = (
    "NumPy training data must be moved to the GPU and CuPy is not installed "
    "(pip install cupy-cuda12x, or pass a CUDA torch tensor)"
)


def cuda_problem() -> str | None:
    """What is missing for ``backend="cuda"`` (None when the kernels can run)."""
    try:
        from .. import _cuda
    except ImportError:
        return NOT_BUILT
    if _cuda.device_count() < 1:
        return NO_DEVICE
    return None


def _on_gpu(train):
    """``train`` as a CuPy array or CUDA torch tensor (NumPy is copied once with CuPy)."""
    if _xp.on_gpu(train):
        return train
    try:
        import cupy
    except ImportError:
        raise RuntimeError(f"backend='cuda' is not available: {NO_LIBRARY}") from None
    return cupy.asarray(np.ascontiguousarray(train))


def _pointer(a) -> int:
    if type(a).__module__.startswith("cupy"):
        return int(a.__cuda_array_interface__["data"][0])
    return int(a.data_ptr())


def _stream(a) -> int:
    if type(a).__module__.startswith("cupy"):
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    import torch

    return int(torch.cuda.current_stream(a.device).cuda_stream)


@contextlib.contextmanager
def _on_device(a):
    """Makes the GPU of ``a`` the calling thread's current device while kernels are queued
    (the extension launches on the current device) and gives the stream to queue them on: the
    array library's current stream there."""
    if type(a).__module__.startswith("cupy"):
        with a.device:
            yield _stream(a)
    elif getattr(a, "is_cuda", False):
        import torch

        with torch.cuda.device(a.device):
            yield _stream(a)
    else:
        yield _stream(a)


def _contiguous(a):
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy.ascontiguousarray(a)
    return a.contiguous()


class CudaBackend(ArrayApiBackend):
    """Mixture statistics by the CUDA kernels (float32 or float64 training sets on a GPU)."""

    name = "cuda"
    capabilities = ArrayApiBackend.capabilities | {FUSED_SAMPLE, DRAWS, COV_NOISE}

    def __init__(self, train, weights, *, refine: str = "auto", products: str = "auto", **options):
        problem = cuda_problem()
        if problem is not None:
            raise RuntimeError(
                f"backend='cuda' is not available: {problem}. "
                "backend='cupy' runs the array-API fallback instead"
            )
        if products not in PRODUCTS:
            raise ValueError(
                f"products must be one of {', '.join(map(repr, PRODUCTS))}, got {products!r}"
            )
        super().__init__(_contiguous(_on_gpu(train)), weights, refine=refine, **options)
        if products == "3xtf32" and self.dtype != np.float32:
            raise ValueError("products='3xtf32' needs float32 training data")
        self.products = products
        # the kernels read these by pointer: contiguous once, referenced by the backend
        for name in ("train", "packed", "p2", "pnorm", "mu"):
            setattr(self, name, _contiguous(getattr(self, name)))
        if self.wide != self.xp.float64:
            raise RuntimeError("backend='cuda' needs float64 on the device")
        xp = self.xp
        xc = xp.astype(self.train, self.wide) - self.mu
        self.xc2 = _contiguous(xp.sum(xc * xc, axis=1))  # |X_n - mu|^2, float64
        # the CPU engine's refinement rule (mixscore._core.EngineOptions; "all": every entry
        # within the cutoff exact)
        self.rule = dict(_ENGINE_RULE, cap=0.0) if refine == "all" else dict(_ENGINE_RULE)
        self.pmax = float(xp.max(self.pnorm)) if self.n else 0.0

    def _products(self, bound, alpha, inv) -> int:
        """The logits product of this call (the kernels' ``Products``). "auto": float64 where
        the float32 product's bound (at the largest |alpha| |p_n|) exceeds the cap for some
        query, as every entry within the cutoff would then be recomputed exactly (the slow
        band of the CPU engine's precise product)."""
        if self.products != "auto":
            return PRODUCTS.index(self.products) - 1
        return 1 if self._wide(bound, alpha, inv) else 0

    def _wide(self, bound, alpha, inv) -> bool:
        return self.dtype == np.float32 and bool(self.xp.any(self._over_cap(bound, alpha, inv)))

    def _over_cap(self, bound, alpha, inv):
        """Where the float32 product's bound at the largest b = |alpha| |p_n| (it grows with
        b) exceeds the cap (elementwise, any namespace)."""
        k0, k1, k2 = bound
        b = abs(alpha) * self.pmax
        return (k0 + b * (k1 + b * k2)) * inv > self.rule["cap"]

    def _grid_products(self, alpha: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
        """The logits product at each grid point of the fused loop (int32, the kernels'
        ``Products``). "auto" decides as ``_products`` for a state x = alpha X_n + sigma z of
        the model (|x - alpha mu| <= |alpha| max |p_n| + sigma (sqrt(D) + 4)), as the states
        stay on the GPU: the choice changes the speed only (entries the float32 bound cannot
        settle are recomputed exactly)."""
        if self.products != "auto":
            return np.full(alpha.size, PRODUCTS.index(self.products) - 1, np.int32)
        if self.dtype != np.float32:
            return np.zeros(alpha.size, np.int32)
        a = np.abs(alpha) * self.pmax + np.sqrt(sigma2) * (math.sqrt(self.dim) + 4.0)
        bound = expansion_bound(a, np.abs(alpha) * self.mu_norm, self.dim, self.u)
        with np.errstate(divide="ignore"):
            inv = np.minimum(0.5 / sigma2, 1e300)
        return self._over_cap(bound, alpha, inv).astype(np.int32)

    def _training_arrays(self) -> dict:
        """Device pointers of the prepared training set (the kernels' arguments)."""
        arrays = dict(train=self.train, packed=self.packed, p2=self.p2, pnorm=self.pnorm,
                      xc2=self.xc2, mu=self.mu)
        out = {k: _pointer(v) for k, v in arrays.items()}
        out["logw"] = 0 if self.logw is None else _pointer(self.logw)
        return out

    def _workspace(self, m: int, products) -> tuple[object, int]:
        """The pass's workspace for m queries under any of ``products``: (buffer, queries per
        chunk)."""
        from .. import _cuda

        f64 = self.dtype == np.float64

        def nbytes(rows: int) -> int:
            return max(_cuda.posterior_workspace(self.n, self.dim, rows, int(p), f64)
                       for p in set(products))

        rows = _chunk_rows(m, nbytes(128), _WORKSPACE_BYTES)
        return self.xp.empty((max(1, nbytes(rows)),), dtype=self.xp.uint8,
                             device=self.device), rows

    def _row_kernel_args(self, x, alpha, sigma2, rows, **rule) -> tuple[list, dict]:
        """The arguments of a kernel over the rows of queries x (draws, cov_noise): the
        per-query inputs, the training set, the refinement rule (``rule`` overrides), a
        workspace. Returns (the device arrays, to keep referenced until the launch; the
        keyword arguments)."""
        xp = self.xp
        _, q, xs2, alpha, sigma2, bound, inv = self._setup(x, alpha, sigma2)
        products = self._products(bound, alpha, inv)
        work, ws_rows = self._workspace(x.shape[0], (products,))
        ids = _xp.place_like(rows, xp, self.device, xp.int64)
        q, alpha, sigma2, xs2, ids = (_contiguous(a) for a in (q, alpha, sigma2, xs2, ids))
        train = dict(self._training_arrays(), N=self.n, D=self.dim, mu_norm=self.mu_norm,
                     workspace=_pointer(work), ws_rows=ws_rows, **dict(self.rule, **rule))
        args = dict(train=train, x=_pointer(x), q=_pointer(q), alpha=_pointer(alpha),
                    sigma2=_pointer(sigma2), xs2=_pointer(xs2), M=x.shape[0], products=products,
                    rows=_pointer(ids))
        return [work, q, alpha, sigma2, xs2, ids], args

    def draws(self, x, alpha, sigma2, R: int, seed: int, rows, first_step: int = 0):
        """(M, R) local training indices (int64, on the device) drawn from w_n(x, t) by the
        draws kernel (cuda/draws.cu; the ``draws`` capability): exponential jumps over the
        weights in index order with the Philox streams of
        ``mixscore.covariance.posterior_draws`` (Philox row ``rows[i]``, steps first_step +
        r), so the indices are the reference's except where the weights' rounding decides.
        x: queries of this backend's library; alpha, sigma2, rows: host arrays (M,)."""
        from .. import _core, _cuda

        x = _contiguous(self._inputs(x))
        out = self.xp.empty((x.shape[0], int(R)), dtype=self.xp.int64, device=self.device)
        if x.shape[0] == 0:
            return out
        _keep, args = self._row_kernel_args(x, alpha, sigma2, rows, cut=self._draws_cut())
        run = _cuda.draws_f64 if self.dtype == np.float64 else _cuda.draws_f32
        with _on_device(self.train) as stream:
            run(**args, R=int(R), key=(int(seed) ^ _core.DRAWS_KEY) & 0xFFFFFFFFFFFFFFFF,
                first_step=int(first_step), out=_pointer(out), stream=stream)
        return out

    def cov_noise(self, x, alpha, sigma2, seed: int, rows, step: int = 0):
        """(M, D) float64 noise with covariance Cov_w(X_0) per query, on the device: the
        posterior pass for the means, then the noise kernel (cuda/cov_noise.cu) with the
        Philox streams of ``mixscore.covariance.cov_noise`` (the ``cov_noise`` capability).
        x: queries of this backend's library; alpha, sigma2, rows: host arrays (M,)."""
        from .. import _cuda

        x = _contiguous(self._inputs(x))
        out = self.xp.empty((x.shape[0], self.dim), dtype=self.xp.float64, device=self.device)
        if x.shape[0] == 0:
            return out
        mean = _contiguous(self.device_partial(x, alpha, sigma2).mean())
        # every kept entry exact (cap 0): each costs O(D) in the sum anyway, and a weight's
        # error counts at half its size in sqrt(w), not at its weight
        _keep, args = self._row_kernel_args(x, alpha, sigma2, rows, cut=self._noise_cut(),
                                            cap=0.0)
        run = _cuda.cov_noise_f64 if self.dtype == np.float64 else _cuda.cov_noise_f32
        with _on_device(self.train) as stream:
            run(**args, mean=_pointer(mean), key=_noise_key(seed), step=int(step),
                out=_pointer(out), stream=stream)
        return out

    def _noise_cut(self) -> float:
        """The covariance noise's truncation, nats below the maximum: its terms are sqrt(w),
        so twice the posterior's keeps every term above e^-40 of the largest."""
        return 2.0 * _CUTOFF_NATS + math.log(self.n)

    def _draws_cut(self) -> float:
        """The draws' truncation, nats below the maximum: the reference's and the C++
        handler's (cpp/src/draws.hpp)."""
        return min(60.0, math.log(self.n) + (20.0 if self.dtype == np.float32 else 40.0))

    def fused_sample(self, x, first_sample: int, plan, seed: int, save_steps: np.ndarray,
                     saved, end_denoise: bool, on_step, every: int, rows=None):
        """The whole fixed-grid sampler loop on the GPU (cuda/sampler.cu; the ``fused_sample``
        capability): the states x (n, D, this backend's library, dtype and device; copied)
        never leave the device, the noise is the Philox stream of the CPU loop drawn there,
        the plan's regularizers are applied as the C++ loop does, the naive sampler's
        posterior draws by the draws kernel, the effective sampler's noise by the noise kernel
        (``cov_noise``). ``saved``: an array (len(save_steps), n, D) of
        this library or None. Returns (x, the step after which a state was NaN/Inf or -1)."""
        from .. import _cuda

        xp, dev = self.xp, self.device
        x = _contiguous(xp.asarray(x, copy=True))
        n, d = x.shape
        ids = rows if rows is not None else np.arange(first_sample, first_sample + n)
        ids = _contiguous(_xp.place_like(ids, xp, dev, xp.int64))
        shift = None if plan.shift is None else _xp.place_like(plan.shift, xp, dev, xp.float64)
        products = self._grid_products(plan.alpha, plan.sigma2)
        work, ws_rows = self._workspace(n, products)
        f64 = self.dtype == np.float64
        draws = None if plan.draws is None else np.ascontiguousarray(plan.draws, np.int64)
        max_draws = 0 if draws is None else int(draws.max())
        nbytes = _cuda.sampler_scratch(n, d, plan.predictor, max_draws, plan.posterior_noise,
                                       f64)
        scratch = xp.empty((max(1, nbytes),), dtype=xp.uint8, device=dev)
        train = dict(self._training_arrays(), N=self.n, D=self.dim, mu_norm=self.mu_norm,
                     cut=_CUTOFF_NATS + math.log(self.n), workspace=_pointer(work),
                     ws_rows=ws_rows, **self.rule)
        run = _cuda.sample_f64 if f64 else _cuda.sample_f32
        with _on_device(self.train) as stream:
            bad = run(
                train=train,
                x=_pointer(x),
                n=n,
                saved=0 if saved is None else _pointer(saved),
                rows=_pointer(ids),
                shift=0 if shift is None else _pointer(shift),
                products=products,
                log_weight_sum=self.log_weight_sum,
                draws_cut=self._draws_cut(),
                posterior_noise=plan.posterior_noise,
                noise_key=_noise_key(seed),
                noise_cut=self._noise_cut(),
                scratch=_pointer(scratch),
                coef=plan.coef,
                draws=draws,
                alpha=plan.alpha,
                sigma2=plan.sigma2,
                predictor=plan.predictor,
                seed=seed,
                end_denoise=end_denoise,
                save_steps=np.ascontiguousarray(save_steps, dtype=np.int64),
                eb_log_c=plan.eb_log_c,
                eb_density=plan.eb_density,
                shift_scale=plan.shift_scale,
                callback=on_step,
                every=every,
                stream=stream,
            )
        return x, bad

    def _pass(self, q, xw, xs2, alpha, bound, sigma2, inv, m: int):
        from .. import _cuda

        xp, wide, dev = self.xp, self.wide, self.device
        lam_min = xp.empty((m,), dtype=wide, device=dev)
        best = xp.empty((m,), dtype=xp.int64, device=dev)
        acc = {k: xp.empty((m,), dtype=wide, device=dev) for k in _SCALAR_SUMS}
        acc["s1"] = xp.empty((m, self.dim), dtype=wide, device=dev)
        acc["s1_light"] = xp.empty((m, self.dim), dtype=wide, device=dev)
        if m == 0:
            return lam_min, best, acc
        f64 = self.dtype == np.float64
        products = self._products(bound, alpha, inv)
        work, rows = self._workspace(m, (products,))
        arrays = dict(x=xp.astype(xw, self.train.dtype), q=q, alpha=alpha, sigma2=sigma2,
                      xs2=xs2)
        # the contiguous arrays stay referenced until the kernels are queued
        arrays = {k: _contiguous(v) for k, v in arrays.items()}
        run = _cuda.posterior_f64 if f64 else _cuda.posterior_f32
        with _on_device(self.train) as stream:
            run(
                **{k: _pointer(v) for k, v in arrays.items()},
                **self._training_arrays(),
                M=m,
                N=self.n,
                D=self.dim,
                mu_norm=self.mu_norm,
                cut=_CUTOFF_NATS + math.log(self.n),
                products=products,
                workspace=_pointer(work),
                ws_rows=rows,
                **{k: _pointer(v) for k, v in acc.items()},
                lam_min=_pointer(lam_min),
                best=_pointer(best),
                stream=stream,
                **self.rule,
            )
        return lam_min, best, acc

    def _centre_sums(self, acc: dict, c) -> None:
        """The kernels' sums: the exactly refined entries' about the centre X_best already
        (s1, s2: float64 differences, no cancellation in tau2), the others' about the mean
        (the weighted-sums product; *_light), moved to the centre here."""
        xp = self.xp
        s0l, s1l = acc.pop("s0_light"), acc.pop("s1_light")
        s2l = acc.pop("s2_light")
        acc["s1"] = acc["s1"] + (s1l - s0l[:, None] * c)
        acc["s2"] = (
            acc["s2"] + s2l - 2.0 * xp.sum(c * s1l, axis=1) + s0l * xp.sum(c * c, axis=1)
        )

    def normals(self, seed: int, samples: np.ndarray, step: int, dim: int):
        """The samplers' Philox normals drawn on the GPU (``philox_normals``), equal bit for
        bit to the host draws of the fallback (only the sample indices are copied)."""
        ids = _xp.place_like(samples, self.xp, self.device, self.xp.int64)
        return philox_normals(seed, ids, step, dim)


def _noise_key(seed: int) -> int:
    """The Philox key of the covariance noise (``mixscore.covariance.cov_noise``'s)."""
    from ..covariance import NOISE_KEY

    return (int(seed) ^ NOISE_KEY) & 0xFFFFFFFFFFFFFFFF


def _chunk_rows(m: int, per_tile: int, budget: int) -> int:
    """Queries per chunk of a pass: a multiple of 128 whose workspace (``per_tile`` bytes per
    128 queries) fits ``budget``, at least 128, at most what m needs and 2^20 (grid limits)."""
    need = -(-m // 128) * 128
    return min(need, 1 << 20, max(1, budget // max(1, per_tile)) * 128)


def _require():
    problem = cuda_problem()
    if problem is not None:
        raise RuntimeError(f"mixscore CUDA kernels are not available: {problem}")
    from .. import _cuda

    return _cuda


def nearest(queries, train, k: int):
    """Exact k nearest training points by the CUDA kernel: (squared distances (M, k) float64,
    indices (M, k) int64) in the inputs' library on the GPU, ascending by (distance, index),
    bit-identical to the CPU engine's exact distances (k <= 32)."""
    _cuda = _require()
    prep = CudaBackend(train, None)  # the training mean, centred float32 rows, norms
    xp, dev, n, d = prep.xp, prep.device, prep.n, prep.dim
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(n, _cuda.MAX_K):
        raise ValueError(
            f"k must be an int in [1, min(N, {_cuda.MAX_K})] = "
            f"[1, {min(n, _cuda.MAX_K)}], got {k!r}"
        )
    x, _ = prep.queries(queries, d)
    x = _contiguous(x)
    xs = xp.astype(x, xp.float64) - prep.mu
    q = _contiguous(xp.astype(xs, prep.train.dtype))
    xs2 = _contiguous(xp.sum(xs * xs, axis=1))
    m = x.shape[0]
    sq = xp.empty((m, k), dtype=xp.float64, device=dev)
    idx = xp.empty((m, k), dtype=xp.int64, device=dev)
    itemsize = np.dtype(prep.dtype).itemsize
    rows = _chunk_rows(m, 128 * n * itemsize, _WORKSPACE_BYTES) if d > _cuda.DIRECT_MAX_D else 0
    work = xp.empty((max(1, rows * n * itemsize),), dtype=xp.uint8, device=dev)
    run = _cuda.nearest_f32 if prep.dtype == np.float32 else _cuda.nearest_f64
    with _on_device(prep.train) as stream:
        run(
            *[_pointer(a) for a in (x, q, prep.train, prep.packed, prep.p2, xs2)],
            m,
            n,
            d,
            k,
            prep.mu_norm,
            _pointer(work),
            rows,
            _pointer(sq),
            _pointer(idx),
            stream,
        )
    return sq, idx


def philox_normals(seed: int, samples, step: int, dim: int):
    """Standard normals (len(samples), dim) float64 of the samplers' Philox stream
    (cpp/include/mixscore/philox.hpp) drawn on the GPU; ``samples`` an int64 CuPy array or
    CUDA torch tensor of sample indices. Equal bit for bit to ``mixscore._core.philox_normals``
    (the CPU draws)."""
    _cuda = _require()
    samples = _contiguous(samples)
    xp, dev = _xp.namespace(samples)
    z = xp.empty((samples.shape[0], dim), dtype=xp.float64, device=dev)
    with _on_device(samples) as stream:
        _cuda.philox_normals(seed, _pointer(samples), samples.shape[0], step, dim, _pointer(z),
                             stream)
    return z
