"""The CUDA GEMM tile (cuda/tile_gemm.cuh) compiled as C++ and run on the CPU, one block as 256
threads with a barrier (tests/cuda_host/tile_check.cpp): every entry equals the in-order FMAs
bit for bit (both operand layouts, float and double, partial tiles, k ranges inside the
operand). This checks the tile's indexing, its two shared-memory stages and its barriers
without a GPU; speed, coalescing and bank conflicts are for a GPU (bench/gpu_session.sh)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gemm_tile_equals_in_order_fmas(tmp_path):
    cxx = shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or clang++) on PATH")
    exe = tmp_path / "tile_check"
    build = subprocess.run(
        [cxx, "-std=c++20", "-O1", "-pthread", "-ffp-contract=off", "-w",
         "-I", str(ROOT / "cuda"), str(ROOT / "tests" / "cuda_host" / "tile_check.cpp"),
         "-o", str(exe)],
        capture_output=True, text=True)
    if build.returncode != 0 and "barrier" in build.stderr:
        pytest.skip(f"{cxx} lacks C++20 <barrier>: {build.stderr[:200]}")
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr
