"""Train a small diffusion network on the bundled 8x8 digits and watch it memorize.

Every ``every`` steps the network is sampled with fixed seeds (``ms.torch.memorization_monitor``:
the same grid, start and Philox noise each time) and the fraction of samples that copy a
training digit (d1/d2 < 1/3) is recorded, with the DSM loss of a fixed evaluation batch and that
batch's loss floor (``ms.torch.dsm_floor``: the part of the loss no network can remove). The
exact score's fraction with the same seeds is the reference the network approaches.

    python examples/train_digits.py                  # full run: plot and JSON in train-digits/
    python examples/train_digits.py --exact-targets  # regress on the exact x0 (ms.torch.targets)
    python examples/train_digits.py --quick          # reduced size (the test suite runs this)

The network is an EDM-preconditioned denoiser D(x / alpha, sigma / alpha) (the k-diffusion
frame, ``as_score(..., parametrization="x0", time_input="sigma")``) under the VP schedule of
Song et al., an MLP on the flat 64 pixels with Fourier features of log sigma, one torch thread.
Measured on the development VM (2 cores shared with other jobs, load average about 8, torch
2.13 CPU): the full run (48 training digits, 5000 steps, 11 readings of 256 samples, 100 ddpm
steps) with --exact-targets took 3 min 14 s wall (43 s CPU; memorized fraction 0 -> 0.39, exact
score 1.0); --quick (24 digits, 2000 steps, 5 readings of 64 samples) about 15 s of CPU time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mixscore as ms
import numpy as np
import torch

FULL = dict(n_train=48, steps=5000, every=500, n_samples=256, sample_steps=100, width=384)
QUICK = dict(n_train=24, steps=2000, every=500, n_samples=64, sample_steps=40, width=256)


class Denoiser(torch.nn.Module):
    """A k-diffusion / EDM style denoiser D(x, sigma) (Karras et al. 2022, Table 1
    preconditioning) around an MLP on (c_in x, Fourier features of log sigma)."""

    def __init__(self, dim: int, width: int, sigma_data: float, n_freq: int = 8):
        super().__init__()
        self.sd = sigma_data
        self.register_buffer("freq", 2.0 ** torch.arange(n_freq) / 4)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 2 * n_freq, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, dim),
        )

    def coefficients(self, sigma: torch.Tensor):
        s, sd = sigma.reshape(-1, 1), self.sd
        r = torch.sqrt(s * s + sd * sd)
        return sd * sd / (r * r), s * sd / r, 1 / r  # c_skip, c_out, c_in

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in = self.coefficients(sigma)
        a = torch.log(sigma).reshape(-1, 1) * self.freq
        f = self.net(torch.cat([c_in * x, torch.sin(a), torch.cos(a)], dim=1))
        return c_skip * x + c_out * f


def noised(X, sde, n, gen):
    """A DSM batch in the k-diffusion frame: training indices, VP times (uniform in
    [t_end, T]), sigma / alpha, and the scaled noised points x_t / alpha = X_0 + (sigma/alpha) z;
    also x_t itself for the exact targets."""
    i = torch.randint(0, X.shape[0], (n,), generator=gen)
    t = torch.empty(n).uniform_(sde.t_end, sde.T, generator=gen)
    z = torch.randn(n, X.shape[1], generator=gen)
    td = t.double().numpy()
    al = torch.from_numpy(sde.alpha(td)).float()
    s = torch.from_numpy(sde.sigma(td)).float() / al
    x_ve = X[i] + s[:, None] * z
    return i, t, s, x_ve, al[:, None] * x_ve


def weighted_mse(net, x_ve, s, target):
    """EDM loss weight (s^2 + sd^2) / (s sd)^2 times the squared x0 error, mean over pixels."""
    lam = (s * s + net.sd**2) / (s * net.sd) ** 2
    return lam * ((net(x_ve, s) - target) ** 2).mean(1)


def train(
    n_train: int,
    steps: int,
    every: int,
    n_samples: int,
    sample_steps: int,
    width: int,
    exact_targets: bool = False,
    seed: int = 0,
    batch: int = 128,
    lr: float = 2e-3,
) -> dict:
    """Train and monitor; returns the curves as plain lists."""
    torch.manual_seed(seed)
    X = ms.datasets.digits()[:n_train].astype(np.float32)
    sde = ms.VP()
    model = ms.EmpiricalScore(X, sde)
    Xt = torch.from_numpy(X)
    net = Denoiser(X.shape[1], width, sigma_data=float(X.std()))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    # a fixed evaluation batch: its DSM loss over training and its floor (tau2 weighted alike)
    i_ev, t_ev, s_ev, xve_ev, xt_ev = noised(Xt, sde, 1024, torch.Generator().manual_seed(seed + 1))
    lam_ev = (s_ev**2 + net.sd**2) / (s_ev * net.sd) ** 2
    floor = float((lam_ev * ms.torch.dsm_floor(model, xt_ev, t_ev, "x0", reduction="mean")).mean())
    mon = dict(n=n_samples, sampler="ddpm", steps=sample_steps, seed=seed, n_boot=200)
    exact = ms.torch.memorization_monitor(model, X, **mon)
    out = dict(
        step=[],
        memorized=[],
        ci=[],
        dsm_loss=[],
        floor=floor,
        exact_memorized=exact.fraction,
        exact_ci=list(exact.ci),
        n_train=n_train,
        exact_targets=exact_targets,
        settings=exact.settings,
    )
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                loss_ev = float(weighted_mse(net, xve_ev, s_ev, Xt[i_ev]).mean())
            r = ms.torch.memorization_monitor(
                net, X, schedule=sde, parametrization="x0", time_input="sigma", **mon
            )
            out["step"].append(step)
            out["memorized"].append(r.fraction)
            out["ci"].append(list(r.ci))
            out["dsm_loss"].append(loss_ev)
            print(
                f"step {step:5d}  DSM loss {loss_ev:.4f} (floor {floor:.4f})  memorized "
                f"{r.fraction:.3f} (exact score {exact.fraction:.3f})",
                flush=True,
            )
        if step == steps:
            break
        i, t, s, x_ve, x_t = noised(Xt, sde, batch, gen)
        target = ms.torch.targets(model, x_t, t).denoised if exact_targets else Xt[i]
        loss = weighted_mse(net, x_ve, s, target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["seconds"] = time.perf_counter() - t0
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(res["step"], res["memorized"], "o-", label="network")
    a.axhline(res["exact_memorized"], color="k", ls="--", label="exact score")
    a.set(xlabel="training step", ylabel="memorized fraction (d1/d2 < 1/3)", ylim=(-0.02, 1.02))
    a.legend()
    b.plot(res["step"], res["dsm_loss"], "o-", label="DSM loss (fixed batch)")
    b.axhline(res["floor"], color="k", ls="--", label="loss floor (exact score)")
    b.set(xlabel="training step", ylabel="EDM-weighted squared x0 error", yscale="log")
    b.legend()
    fig.suptitle(
        f"{res['n_train']} digits, {'exact' if res['exact_targets'] else 'noisy'} x0 targets"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="reduced size (CI)")
    p.add_argument("--exact-targets", action="store_true",
                   help="regress on the exact denoiser (x0) targets")
    p.add_argument("--out", default="train-digits", help="folder for results.json and the plot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # on a shared 2-core machine more threads spin against each other
    res = train(**(QUICK if args.quick else FULL), exact_targets=args.exact_targets, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    if not args.no_plot:
        try:
            plot(res, out / "memorization.png")
        except ImportError:
            print("no plot: pip install matplotlib")
    print(f"wrote {out}/ in {res['seconds']:.1f} s of training")
    return res


if __name__ == "__main__":
    main()
