"""Samples saved as 0..255 pixels, training set in [-1, 1]: mixscore refuses to compare them
(the distances would be meaningless) until the samples' range is given."""

import mixscore as ms

X = ms.datasets.digits()  # [-1, 1]
samples = (X[:50] + 1) * 127.5  # the same images as 0..255 pixels

try:
    ms.memorization(samples, X)
except ValueError as e:
    print("refused:", e)

rep = ms.memorization(samples, X, samples_range=(0, 255))
print(f"memorized fraction: {rep.fraction_ratio:.2f}, CI {rep.ci_ratio}")
