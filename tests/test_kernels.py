"""Tests for zssr_tf.kernels: loading, validation, kernel_shift and preprocess_kernels."""

import numpy as np
import pytest
import scipy.io
import scipy.ndimage

from zssr_tf.kernels import KernelError, kernel_shift, load_kernel, preprocess_kernels, validate_kernel


def _gaussian(size: int = 9, sigma: float = 1.5) -> np.ndarray:
    """A normalised Gaussian centred on the middle pixel (centre of mass (size - 1) / 2 per axis)."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    k = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return k / k.sum()


def _raises_one_line(fn, *args, match: str) -> KernelError:
    with pytest.raises(KernelError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("name", ["Kernel", "kernel"])
def test_load_mat(tmp_path, name):
    k = _gaussian()
    path = tmp_path / "k.mat"
    scipy.io.savemat(path, {name: k})
    loaded = load_kernel(path)
    assert loaded.dtype == np.float64 and loaded.shape == (9, 9)
    np.testing.assert_allclose(loaded, k)


def test_load_mat_prefers_original_name(tmp_path):
    path = tmp_path / "k.mat"
    scipy.io.savemat(path, {"Kernel": np.ones((3, 3)), "kernel": np.ones((5, 5))})
    assert load_kernel(str(path)).shape == (3, 3)


def write_v73_mat(path, variables):
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 after a 512-byte header that says version 2.0, matrices stored
    column-major (so HDF5 holds each one transposed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            f.create_dataset(name, data=np.asarray(value).T)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + b"\0\x02IM"
    with open(path, "r+b") as f:
        f.write(header)


def test_load_v73_mat_through_h5py_in_matlab_order(tmp_path):
    kernel = np.arange(1.0, 13.0).reshape(3, 4)  # not symmetric: a transposition would show
    write_v73_mat(tmp_path / "k.mat", {"Kernel": kernel / kernel.sum()})
    np.testing.assert_allclose(load_kernel(tmp_path / "k.mat"), kernel / kernel.sum())
    write_v73_mat(tmp_path / "other.mat", {"weights": np.ones((3, 3))})
    _raises_one_line(load_kernel, tmp_path / "other.mat", match="no variable 'Kernel' or 'kernel'")
    (tmp_path / "broken.mat").write_bytes((tmp_path / "k.mat").read_bytes()[:700])
    _raises_one_line(load_kernel, tmp_path / "broken.mat", match="MATLAB v7.3 / HDF5 file h5py cannot read")


def test_load_npy_with_negative_taps(tmp_path):
    k = _gaussian()
    k[0, 0] = -0.0055  # like the original's real-image kernel
    path = tmp_path / "k.npy"
    np.save(path, k.astype(np.float32))
    loaded = load_kernel(path)
    assert loaded.dtype == np.float64
    np.testing.assert_allclose(loaded, k.astype(np.float32))


def test_load_errors(tmp_path):
    _raises_one_line(load_kernel, tmp_path / "missing.mat", match="missing.mat: no such file")
    (tmp_path / "empty.mat").write_bytes(b"")
    _raises_one_line(load_kernel, tmp_path / "empty.mat", match="empty.mat: cannot read")
    (tmp_path / "corrupt.mat").write_bytes(b"MATLAB 5.0 MAT-file\n" + bytes(range(256)) * 3)
    _raises_one_line(load_kernel, tmp_path / "corrupt.mat", match="corrupt.mat: cannot read")
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage\n\n\n")
    _raises_one_line(load_kernel, tmp_path / "corrupt.npy", match="corrupt.npy: cannot read")
    (tmp_path / "empty.npy").write_bytes(b"")
    _raises_one_line(load_kernel, tmp_path / "empty.npy", match="empty.npy: cannot read")
    scipy.io.savemat(tmp_path / "other.mat", {"K": np.ones((3, 3))})
    _raises_one_line(load_kernel, tmp_path / "other.mat", match="other.mat: no variable 'Kernel' or 'kernel'")
    (tmp_path / "k.txt").write_text("1 2 3")
    _raises_one_line(load_kernel, tmp_path / "k.txt", match="k.txt: unknown extension '.txt'")


def test_load_validates(tmp_path):
    scipy.io.savemat(tmp_path / "nan.mat", {"Kernel": np.full((3, 3), np.nan)})
    _raises_one_line(load_kernel, tmp_path / "nan.mat", match="kernel file .*nan.mat: kernel has non-finite")


@pytest.mark.parametrize(
    "kernel, match",
    [
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), "non-finite"),
        (np.ones((3, 3, 1)), "2-D kernel, got shape \\(3, 3, 1\\)"),
        (np.ones(5), "2-D kernel, got shape \\(5,\\)"),
        (np.zeros((0, 3)), "empty"),
        (np.zeros((3, 3)), "positive sum"),
        (np.array([[1.0, -1.0]]), "positive sum"),
        (np.array([[-1.0, 0.5]]), "positive sum"),
        (np.ones((3, 3), dtype=bool), "real numeric"),
        (np.ones((3, 3), dtype=complex), "real numeric"),
        (np.array([["a", "b"]]), "real numeric"),
    ],
)
def test_validate_errors(kernel, match):
    err = _raises_one_line(validate_kernel, kernel, "my source", match=match)
    assert str(err).startswith("my source: ")


def test_validate_returns_float64_copy():
    k = np.ones((3, 3), dtype=np.int32)
    out = validate_kernel(k)
    assert out.dtype == np.float64
    out[0, 0] = 7
    assert k[0, 0] == 1


def test_kernel_shift_golden_centre_of_mass():
    k = _gaussian(9)  # centre of mass (4, 4)
    before = k.copy()
    # sf 2, Python-2 semantics: wanted = 9 // 2 + 0.5 * (2 - 9 % 2) = 4 + 0.5 = 4.5; shift = 4.5 - 4 = 0.5;
    # pad = ceil(0.5) + 1 = 2 -> 13 x 13; centre of mass in padded coordinates = 2 + 4.5 = 6.5.
    out = kernel_shift(k, 2)
    assert out.shape == (13, 13)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(out), (6.5, 6.5), atol=2e-3)
    np.testing.assert_array_equal(k, before)
    # sf 4: wanted = 4 + 0.5 * (4 - 1) = 5.5; shift 1.5; pad = ceil(1.5) + 1 = 3 -> 15 x 15; com = 3 + 5.5 = 8.5.
    out = kernel_shift(k, 4)
    assert out.shape == (15, 15)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(out), (8.5, 8.5), atol=2e-3)
    # sf 3 (odd): wanted = 4 + 0.5 * (3 - 1) = 5; shift 1; pad = 1 + 1 = 2 -> 13 x 13; com = 2 + 5 = 7.
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(kernel_shift(k, 3)), (7.0, 7.0), atol=2e-3)


def test_kernel_shift_pair_and_scalar():
    k = _gaussian(9)
    np.testing.assert_array_equal(kernel_shift(k, 2), kernel_shift(k, (2, 2)))
    np.testing.assert_array_equal(kernel_shift(k, 2.0), kernel_shift(k, [2.0, 2.0]))
    # (vertical 2, horizontal 4): wanted = (4.5, 5.5), shifts (0.5, 1.5), pad = ceil(1.5) + 1 = 3 on every side
    # -> 15 x 15, com = (3 + 4.5, 3 + 5.5) = (7.5, 8.5).
    out = kernel_shift(k, (2, 4))
    assert out.shape == (15, 15)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(out), (7.5, 8.5), atol=2e-3)
    with pytest.raises(ValueError, match="scale factor"):
        kernel_shift(k, (2, 2, 2))


def test_kernel_shift_off_centre_kernel():
    # Mass at (2, 6) in a 9 x 9 kernel, sf 2: wanted 4.5 per axis -> shift (2.5, -1.5); pad = ceil(2.5) + 1 = 4
    # -> 17 x 17; com = 4 + 4.5 = 8.5 per axis.
    k = np.zeros((9, 9))
    k[1:4, 5:8] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    out = kernel_shift(k, 2)
    assert out.shape == (17, 17)
    np.testing.assert_allclose(scipy.ndimage.center_of_mass(out), (8.5, 8.5), atol=2e-2)


def test_kernel_shift_keeps_sum_approximately():
    k = _gaussian(9)
    k[0, 0] = -0.005  # negative taps are allowed
    for sf in (2, 1.5, (2, 4)):
        assert kernel_shift(k, sf).sum() == pytest.approx(k.sum(), abs=1e-3)


def test_preprocess_kernels_none():
    assert preprocess_kernels(None, [[2.0, 2.0], [4.0, 4.0]]) == ["cubic", "cubic"]
    assert preprocess_kernels(None, [2.0], downscale_method="lanczos3") == ["lanczos3"]


def test_preprocess_kernels_paths_and_arrays(tmp_path):
    k = _gaussian(9)
    scipy.io.savemat(tmp_path / "a_0.mat", {"Kernel": k})
    np.save(tmp_path / "a_1.npy", k)
    out = preprocess_kernels([tmp_path / "a_0.mat", str(tmp_path / "a_1.npy"), k], [[2.0, 2.0], 4.0, (2, 4)])
    assert [o.shape for o in out] == [(13, 13), (15, 15), (15, 15)]
    np.testing.assert_allclose(out[0], kernel_shift(k, 2))
    np.testing.assert_allclose(out[2], kernel_shift(k, (2, 4)))
    assert len(preprocess_kernels(tmp_path / "a_0.mat", [2.0])) == 1  # a single path is a one-element list


def test_preprocess_kernels_errors(tmp_path):
    k = _gaussian(9)
    _raises_one_line(preprocess_kernels, [k], [2.0, 4.0], match="got 1 kernels for 2 scale factors")
    _raises_one_line(preprocess_kernels, [k, k, k], [2.0, 4.0], match="got 3 kernels for 2 scale factors")
    _raises_one_line(preprocess_kernels, [k, np.zeros((3, 3))], [2.0, 4.0], match="kernels\\[1\\]: .*positive sum")
    _raises_one_line(preprocess_kernels, [tmp_path / "x.mat"], [2.0], match="x.mat: no such file")
