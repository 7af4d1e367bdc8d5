"""A k-diffusion Karras grid (it ends at sigma = 0) with the Heun sampler under EDM, where the
time is sigma itself. The score is never evaluated at 0: Heun's last step is an Euler step."""

import mixscore as ms
import numpy as np


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0):
    """k_diffusion.sampling.get_sigmas_karras, in NumPy: n sigmas and a final 0."""
    ramp = np.linspace(0, 1, n)
    max_inv, min_inv = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return np.append((max_inv + ramp * (min_inv - max_inv)) ** rho, 0.0)


X = ms.datasets.spiral()
model = ms.EmpiricalScore(X, ms.EDM())
sigmas = get_sigmas_karras(40, 0.002, 80.0)
res = ms.sample(model, 200, sampler="heun", grid=sigmas, seed=0)
d1 = ms.nearest(res.samples, X, k=1).distances[:, 0]
print(res)
print(f"median distance to the nearest training point: {np.median(d1):.2e}")
