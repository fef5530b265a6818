"""Crops, flips, the ten views, mean windows and the PCA lighting noise (paper sections 2, 4.1, 6)."""

import numpy as np
import pytest
import torch

from alexnet.data import augment

S, C = 256, 227


def coord_image() -> np.ndarray:
    """(S, S, 3) uint8 whose pixels tell where they are: R = row % 256, G = col % 256, B = (row*7+col)
    % 251."""
    r, c = np.mgrid[0:S, 0:S]
    return np.stack([r % 256, c % 256, (r * 7 + c) % 251], axis=-1).astype(np.uint8)


def test_ten_views_are_the_four_corners_the_centre_and_their_mirrors():
    views = augment.ten_views(S, C)
    far, mid = S - C, (S - C) // 2
    assert views[:5] == [(0, 0, 0), (0, far, 0), (far, 0, 0), (far, far, 0), (mid, mid, 0)]
    assert views[5:] == [(t, l, 1) for t, l, _ in views[:5]]
    img = coord_image()
    corners = {
        (0, 0): img[:C, :C],
        (0, far): img[:C, -C:],
        (far, 0): img[-C:, :C],
        (far, far): img[-C:, -C:],
        (mid, mid): img[14 : 14 + C, 14 : 14 + C],
    }
    for top, left, flipped in views:
        expected = corners[(top, left)]
        if flipped:
            expected = expected[:, ::-1]
        got = augment.crop_view(img, (top, left, flipped), C)
        assert got.shape == (3, C, C) and got.flags.c_contiguous
        np.testing.assert_array_equal(got.transpose(1, 2, 0), expected)


def test_centre_crop_is_central():
    t, l, f = augment.centre_crop(S, C)
    assert (t, l, f) == (14, 14, 0)
    assert t + C + t in (S, S - 1)


def test_flip_mirrors_columns():
    img = coord_image()
    a = augment.crop_view(img, (3, 5, 0), C)
    b = augment.crop_view(img, (3, 5, 1), C)
    np.testing.assert_array_equal(b, a[:, :, ::-1])
    assert b[1, 0, 0] == 5 + C - 1  # first column of the mirror is the window's last column


def test_train_crops_stay_inside_and_cover_every_offset():
    tops, lefts, flips = set(), set(), []
    for i in range(3000):
        t, l, f = augment.train_crop(7, 0, i, S, C)
        assert 0 <= t <= S - C and 0 <= l <= S - C and f in (0, 1)
        tops.add(t), lefts.add(l), flips.append(f)
    assert tops == set(range(S - C + 1)) and lefts == set(range(S - C + 1))
    assert 0.45 < np.mean(flips) < 0.55


def test_train_crop_depends_only_on_seed_epoch_index():
    a = [augment.train_crop(1, 2, i, S, C) for i in range(50)]
    assert a == [augment.train_crop(1, 2, i, S, C) for i in range(50)]
    assert a != [augment.train_crop(1, 3, i, S, C) for i in range(50)]
    assert a != [augment.train_crop(2, 2, i, S, C) for i in range(50)]
    np.random.seed(123), torch.manual_seed(5)  # global state must not matter
    assert a == [augment.train_crop(1, 2, i, S, C) for i in range(50)]


def test_train_crop_ablations():
    assert augment.train_crop(0, 0, 1, S, C, random_crop=False, flip=False) == (14, 14, 0)
    assert all(augment.train_crop(0, 0, i, S, C, flip=False)[2] == 0 for i in range(100))


def test_crop_outside_the_image_is_refused():
    with pytest.raises(ValueError):
        augment.crop_view(coord_image(), (S - C + 1, 0, 0), C)


def test_mean_windows_match_slicing():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, S, S)).astype(np.float32)
    crops = [(0, 0, 0), (29, 29, 1), (3, 17, 1), (14, 14, 0)]
    got = augment.mean_windows(torch.from_numpy(mean), torch.tensor(crops), C).numpy()
    for k, (t, l, f) in enumerate(crops):
        ref = mean[:, t : t + C, l : l + C]
        if f:
            ref = ref[:, :, ::-1]
        np.testing.assert_array_equal(got[k], ref)


def test_model_input_is_raw_pixels_minus_the_mean_window_of_each_view():
    img = coord_image()
    rng = np.random.default_rng(1)
    mean = rng.uniform(0, 255, size=(3, S, S)).astype(np.float32)
    views = augment.ten_views(S, C)
    images = torch.from_numpy(np.stack([augment.crop_view(img, v, C) for v in views]))[
        None
    ]  # (1, 10, 3, C, C)
    out = augment.model_input(images, torch.tensor(views)[None], torch.from_numpy(mean))
    assert out.shape == (1, 10, 3, C, C) and out.dtype == torch.float32
    chw = img.transpose(2, 0, 1).astype(np.float32) - mean  # subtract first, then crop: same thing
    for k, (t, l, f) in enumerate(views):
        ref = chw[:, t : t + C, l : l + C]
        np.testing.assert_allclose(out[0, k].numpy(), ref[:, :, ::-1] if f else ref, atol=1e-4)


def _published():
    from alexnet.data.stats import IMAGENET_EIGVAL, IMAGENET_EIGVEC

    return np.asarray(IMAGENET_EIGVAL, np.float64), np.asarray(IMAGENET_EIGVEC, np.float64)


@pytest.mark.parametrize("formula", ["paper", "cuda-convnet"])
def test_lighting_noise_covariance_matches_the_eigen_decomposition(formula):
    """Statistical test: N = 100 000 images; the sample covariance of the per-image RGB offset,
    seen in the eigenvector basis, has variances (255·σ·λ_i)² ('paper', α·λ) or 255²·σ²·λ_i
    ('cuda-convnet', α·√λ) within 3 % (sampling error of a variance is √(2/N) ≈ 0.45 %), and
    correlations between components below 0.02 (sampling std ≈ 0.003)."""
    lam, P = _published()
    sigma, n, c = 0.1, 100_000, 2
    images = torch.zeros(n, 3, c, c, dtype=torch.uint8)
    crops = torch.zeros(n, 3, dtype=torch.int64)
    out = (
        augment.model_input(
            images,
            crops,
            torch.zeros(3, 4, 4),
            eigval=torch.tensor(lam, dtype=torch.float32),
            eigvec=torch.tensor(P, dtype=torch.float32),
            lighting_std=sigma,
            formula=formula,
            generator=torch.Generator().manual_seed(0),
        )
        .double()
        .numpy()
    )
    # One offset per image, the same at every pixel.
    assert np.allclose(out, out[:, :, :1, :1], atol=1e-3)
    rgb = out[:, :, 0, 0]  # (n, 3)
    scale = lam**2 if formula == "paper" else lam
    expected = (255 * sigma) ** 2 * P @ np.diag(scale) @ P.T  # the formula, written out
    cov = np.cov(rgb, rowvar=False)
    in_basis = P.T @ cov @ P
    np.testing.assert_allclose(np.diag(in_basis), (255 * sigma) ** 2 * scale, rtol=0.03)
    corr = in_basis / np.sqrt(np.outer(np.diag(in_basis), np.diag(in_basis)))
    assert np.abs(corr - np.eye(3)).max() < 0.02
    assert np.linalg.norm(cov - expected) / np.linalg.norm(expected) < 0.03
    assert np.abs(rgb.mean(0)).max() < 4 * np.sqrt(np.diag(expected).max() / n)


def test_lighting_is_one_draw_per_image_shared_by_its_views():
    lam, P = _published()
    images = torch.zeros(4, 10, 3, 5, 5, dtype=torch.uint8)
    crops = torch.zeros(4, 10, 3, dtype=torch.int64)
    out = augment.model_input(
        images,
        crops,
        torch.zeros(3, 8, 8),
        eigval=torch.tensor(lam).float(),
        eigvec=torch.tensor(P).float(),
        lighting_std=0.1,
        generator=torch.Generator().manual_seed(1),
    )
    per_image = out[:, :, :, 0, 0]  # (4, 10, 3)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image))
    assert not torch.allclose(per_image[0], per_image[1])


def test_lighting_off_adds_nothing():
    images = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    out = augment.model_input(images, torch.zeros(2, 3, dtype=torch.int64), torch.full((3, 8, 8), 40.0))
    assert torch.equal(out, torch.full((2, 3, 4, 4), 60.0))
