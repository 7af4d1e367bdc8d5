"""A small end-to-end example: the exact score of 1000 points and its small-noise limit."""

import mixscore as ms
import numpy as np

rng = np.random.default_rng(0)
X = rng.standard_normal((1000, 2)).astype(np.float32)
sde = ms.VP()
model = ms.EmpiricalScore(X, sde)
print(model)
x = (sde.alpha(0.05) * X[:5] + sde.sigma(0.05) * rng.standard_normal((5, 2))).astype(np.float32)
for t in [0.5, 0.05, 1e-3]:
    st = model.stats(x, t)
    print(f"t={t:<6} sigma={float(sde.sigma(t)):.3g}  logpdf={np.round(st.logpdf, 2)}  "
          f"n_eff={np.round(st.n_eff, 1)}  argmax={st.argmax}")
st = model.stats(x, 1e-3)
gap = np.abs(st.denoised - X[st.argmax]).max()
print(f"t=1e-3: max |denoised - most likely training point| = {gap:.2e} (memorization limit)")
