"""The training set as a Dask array on a cluster: the same statistics, samples and nearest
neighbours as one machine (needs pip install "mixscore[dask]")."""

import dask.array as da
import mixscore as ms
import numpy as np
from distributed import Client, LocalCluster

if __name__ == "__main__":  # worker processes are spawned: guard the script
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster):
        X = ms.datasets.digits()  # (1797, 64); on a real cluster: da.from_zarr(...), .npy paths
        Xd = da.from_array(X, chunks=(300, 64))  # 6 shards, each prepared once on a worker
        model = ms.EmpiricalScore(Xd, ms.VP())
        local = ms.EmpiricalScore(X, ms.VP())
        x = X[:4] + 0.1
        gap = np.abs(model.denoise(x, 0.05) - local.denoise(x, 0.05)).max()
        print(f"{model}\nmax |sharded - single-process denoiser| = {gap:.1e}")
        res = ms.sample(model, n=16, sampler="ddpm", steps=50, seed=0, start="exact")
        same = ms.sample(local, n=16, sampler="ddpm", steps=50, seed=0, start="exact")
        print(f"max |sample difference| = {np.abs(res.samples - same.samples).max():.1e}")
        d, i = ms.nearest(res.samples, Xd, k=2)
        print(f"d1/d2 of the samples: {np.round(d[:, 0] / d[:, 1], 3)}")
