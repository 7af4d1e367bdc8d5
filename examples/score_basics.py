"""The exact score of the digits and its posterior statistics."""

import mixscore as ms
import numpy as np

X = ms.datasets.digits()  # (1797, 64) in [-1, 1]
model = ms.EmpiricalScore(X, ms.VP())
rng = np.random.default_rng(0)
x = X[:4] + 0.2 * rng.standard_normal((4, 64))
t = 0.1

st = model.stats(x, t)
print(st)  # shapes, not values
print("effective number of training points:", np.round(st.n_eff, 2))
print("most likely training index:", st.argmax)

# the score is the gradient of the log-density: check one coordinate by central differences
h = 1e-5
e = np.zeros(64)
e[7] = h
fd = (model.logpdf(x[0] + e, t) - model.logpdf(x[0] - e, t)) / (2 * h)
print(f"score[7] = {st.score[0, 7]:.6f}, finite difference = {fd:.6f}")
assert abs(fd - st.score[0, 7]) < 1e-4 * max(1.0, abs(fd))
