"""The counter-based generator behind every sampler's noise."""

import numpy as np
import pytest
from mixscore import _core

# Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_known_answers(counter, key, expected):
    assert tuple(_core.philox4x32_10(list(counter), list(key))) == expected


def test_normals_are_standard_and_independent_of_the_request():
    scipy_stats = pytest.importorskip("scipy.stats")
    ids = np.arange(4000, dtype=np.int64)
    z = _core.philox_normals(7, ids, 3, 25)
    assert scipy_stats.kstest(z.ravel(), "norm").pvalue > 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.05
    # a sample's draw depends only on (seed, sample, step): not on the other samples requested
    np.testing.assert_array_equal(_core.philox_normals(7, ids[[17, 3]], 3, 25), z[[17, 3]])
    # odd D is a prefix of the next even D; other steps and seeds differ
    np.testing.assert_array_equal(_core.philox_normals(7, ids, 3, 24), z[:, :24])
    assert not np.array_equal(_core.philox_normals(7, ids, 4, 25), z)
    assert not np.array_equal(_core.philox_normals(8, ids, 3, 25), z)


def test_uniforms_in_unit_interval():
    u = _core.philox_uniforms(1, np.arange(10000, dtype=np.int64), 0)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01


def _box_muller_reference(seed, sample, step, D):
    """Box-Muller with NumPy's libm on the raw Philox blocks (the definition of the noise)."""
    z = []
    for j in range((D + 1) // 2):
        b = _core.philox4x32_10([j, step, sample & 0xFFFFFFFF, sample >> 32],
                                [seed & 0xFFFFFFFF, seed >> 32])
        u1 = 1.0 - ((b[0] << 32 | b[1]) >> 11) * 2.0**-53
        u2 = ((b[2] << 32 | b[3]) >> 11) * 2.0**-53
        r = np.sqrt(-2 * np.log(u1))
        z += [r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)]
    return np.array(z[:D])


def test_normals_match_box_muller_and_every_instruction_set():
    seed, ids, D = 2**40 + 3, np.array([0, 5, 2**33 + 1], dtype=np.int64), 7
    z = _core.philox_normals(seed, ids, 12, D)
    for row, i in zip(z, ids, strict=True):
        np.testing.assert_allclose(row, _box_muller_reference(seed, int(i), 12, D),
                                   rtol=1e-13, atol=1e-14)
    # the SIMD builds draw the same bits as each other (and as the fused sampler)
    rows = np.arange(300, dtype=np.int64)
    best = _core.isa()
    expected = _core.philox_normals(seed, rows, 4, 33)
    try:
        for isa in ("generic", "avx2", "avx512"):
            if _core.set_isa(isa):
                np.testing.assert_array_equal(_core.philox_normals(seed, rows, 4, 33), expected)
    finally:
        _core.set_isa(best)
