"""Preprocessing presets (curation_rules/volume_presets.v1.yaml), padding fraction, lossless
storage dtype."""

from __future__ import annotations

import numpy as np
import pytest

from curate.parse.volume import Volume, preprocess, preset
from curate.parse.volume_preprocess import lossless, padding_fraction, presets


def test_presets_come_from_the_rule_file():
    assert set(presets()) == {"native", "ct_clip"}
    native = preset("native")
    assert native.target_spacing is None and native.intensity_window is None
    assert native.target_shape is None and native.store_dtype == "lossless"
    ct_clip = preset("ct_clip")
    assert ct_clip.target_spacing == (0.75, 0.75, 1.5)
    assert ct_clip.target_shape == (480, 480, 240)
    assert ct_clip.intensity_window == (-1000.0, 1000.0) and ct_clip.store_dtype == "int16"
    with pytest.raises(ValueError, match="unknown volume preprocessing preset"):
        preset("nnunet")


def test_native_keeps_grid_values_and_affine():
    array = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3) * 7 - 1024
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    prepared = preprocess(Volume(array.copy(), affine), preset("native"))
    assert prepared.array.dtype == np.int16
    assert np.array_equal(prepared.array, array.astype(np.int16))
    np.testing.assert_array_equal(prepared.affine, affine)
    assert prepared.padding_fraction == 0.0 and prepared.warnings == []


def test_three_slices_in_the_ct_clip_grid_are_mostly_padding():
    volume = Volume(np.zeros((512, 512, 3), dtype=np.float32), np.diag([0.7, 0.7, 1.5, 1.0]))
    prepared = preprocess(volume, preset("ct_clip"))
    assert prepared.array.shape == (480, 480, 240)
    # 3 slices at 1.5 mm stay 3 slices; 512 columns of 0.7 mm become 477 of 0.75 mm
    in_plane = (511 * 0.7) // 0.75 + 1
    assert prepared.padding_fraction == pytest.approx(1 - in_plane**2 * 3 / (480 * 480 * 240))
    assert prepared.warnings == ["padding_above_limit"]


def test_padding_fraction_counts_only_padded_voxels():
    assert padding_fraction((10, 10, 10), (10, 10, 10)) == 0.0
    assert padding_fraction((20, 10, 5), (10, 10, 10)) == pytest.approx(0.5)  # crop x, pad z
    assert padding_fraction((5, 5, 5), (10, 10, 10)) == pytest.approx(1 - 125 / 1000)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0, 255], np.uint8),
        ([-5, 100], np.int8),
        ([0, 4095], np.uint16),
        ([-1024, 3071], np.int16),
        ([-1024, 70000], np.int32),
        ([0.5, 2.0], np.float32),
    ],
)
def test_lossless_dtype_is_the_smallest_exact_one(values, dtype):
    stored = lossless(np.array(values, dtype=np.float32))
    assert stored.dtype == dtype
    assert np.array_equal(stored.astype(np.float64), np.array(values, dtype=np.float64))
