"""Reproductions of the four papers mixscore is built from, one experiment per command::

    mixscore reproduce --list
    mixscore reproduce NAME [--quick] [--out DIR] [--seed S] [--set KEY=VALUE ...]

or from Python::

    import mixscore.reproduce as rp
    outcome = rp.run("memreg-tikhonov", quick=True)      # settings, numbers, checks, figures
    print(outcome.summary()); rp.write(outcome, "out/")   # result.json and PNG figures

Every experiment uses the exact score (the empirical score of ``mixscore.EmpiricalScore`` or a
closed-form score of ``mixscore.continuous``), records its sampler settings (sampler, grid, step
count, t_end, start, end rule, seed: SCIENCE.md section 6, item 6), checks the paper's
qualitative claims against its own numbers, and runs at full size by default or at reduced
size with ``quick`` (what the tests run). One module per paper:

``pidstrigach``     Pidstrigach, "Score-based generative models detect manifolds" (NeurIPS 2022)
``variance``        Vastola, "Generalization through variance" (ICLR 2025 submission)
``bounded_target``  Lu, Wang and Bal, singularities under the submanifold assumption
``memreg``          Baptista et al., "Memorization and regularization in generative diffusion
                    models"
``collapse``        the collapse curve (Biroli, Bonnaire, de Bortoli and Mezard, 2024) on the
                    digits
"""

from __future__ import annotations

from . import bounded_target, collapse, memreg, pidstrigach, variance
from ._common import Check, Experiment, Outcome, write

__all__ = ["EXPERIMENTS", "Experiment", "Outcome", "Check", "get", "names", "run", "write"]

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for module in (pidstrigach, variance, bounded_target, memreg, collapse)
    for e in module.EXPERIMENTS
}


def names() -> list[str]:
    """The registered experiment names, grouped by paper."""
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    """The experiment called ``name`` (a clear error listing the names otherwise)."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; expected one of {names()} (mixscore reproduce --list)"
        )
    return EXPERIMENTS[name]


def run(name: str, quick: bool = False, seed: int = 0, **params) -> Outcome:
    """Run experiment ``name`` at full size (or reduced with ``quick``); ``params`` override
    its parameters (``get(name).full`` lists them). Writes nothing: see ``write``."""
    return get(name).execute(quick=quick, seed=seed, overrides=params)
