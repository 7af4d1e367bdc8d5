"""Sample with the exact score, then measure memorization of the samples."""

import mixscore as ms

X = ms.datasets.digits()
model = ms.EmpiricalScore(X, ms.VP())
res = ms.sample(model, n=100, sampler="ddpm", steps=100, seed=0)
print(res)  # shapes and settings
rep = ms.memorization(res.samples, X)
print(rep.summary())
print("settings:", {k: res.settings[k] for k in ("sampler", "grid", "steps", "t_end", "end")})
