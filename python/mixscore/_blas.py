"""Load the OpenBLAS of the scipy-openblas32 wheel before the C++ extension needs it."""

import ctypes
import os


def preload() -> None:
    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
