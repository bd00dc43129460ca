"""Crop-tolerant image near-dup (curate.dedup.crops): border crops found, others refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curate.dedup.config import CropNearConfig, NearDedupConfig
from curate.dedup.crops import CropAligner, box_weights, crop_signals, min_crop_distance
from curate.dedup.imagehash import _resize, phash_pixels
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate, score


def _image_only(crop: bool) -> NearDedupConfig:
    return NearDedupConfig(caption={"enabled": False}, image={"crop": {"enabled": crop}})


@pytest.fixture(scope="module")
def planted():
    return generate(30, 8, seed=3, variants=("cropped",))


def test_border_crops_are_found_only_with_the_crop_search(planted):
    records = [p.record for p in planted]
    found = score(planted, [d.as_tuple() for d in find_near_duplicates(records, _image_only(True))])
    assert found["cropped"]["recall"] >= 0.8
    assert found["all"]["precision"] == 1.0
    without = score(
        planted, [d.as_tuple() for d in find_near_duplicates(records, _image_only(False))]
    )
    assert without["cropped"]["recall"] < found["cropped"]["recall"]


def _texture(seed: int, size: int = 240) -> Image.Image:
    rng = np.random.default_rng(seed)
    coarse = rng.random((12, 12)) * 255
    image = Image.fromarray(coarse.astype(np.uint8), "L").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return image


def _gray(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def test_aligner_scores_an_uneven_crop_above_an_unrelated_image():
    config = CropNearConfig()
    original = _texture(1)
    crop = original.crop((5, 20, 228, 232))  # 2% left, 8% top, 5% right, 3% bottom
    _, big = crop_signals(_gray(original), config)
    _, small = crop_signals(_gray(crop), config)
    _, other = crop_signals(_gray(_texture(2).crop((5, 20, 228, 232))), config)
    aligner = CropAligner(config)
    ratio = (223 / 212) / 1.0
    assert aligner.score(big, small, ratio) >= config.gradient_min
    assert aligner.score(big, other, ratio) < 0.9
    # a box must give the crop's shape: an impossible aspect ratio matches nothing
    assert aligner.score(big, small, 2.0) == -1.0


def test_centre_hashes_bring_a_crop_within_reach():
    config = CropNearConfig()
    original = _texture(4)
    crop = original.crop((12, 12, 228, 228))  # 5% each side: the centre 90%
    hashes_a, _ = crop_signals(_gray(original), config)
    hashes_b, _ = crop_signals(_gray(crop), config)
    from curate.dedup.imagehash import phash

    buf = io.BytesIO()
    crop.save(buf, "PNG")
    full_b = phash(buf.getvalue())
    assert min_crop_distance(hashes_a, [full_b]) <= config.max_hamming
    windows = len(config.scales) * len(config.offsets) ** 2
    assert len(hashes_a) == windows and len(hashes_b) == windows


@pytest.mark.realdata
def test_shifted_windows_reach_an_uneven_crop_the_centred_ones_miss(realdata):
    """A real MR slice cut 9% on the left and 1% on the right: its centre moved, so no centred
    window of the original is within reach; a window shifted by 3% is."""
    import nibabel

    volume = np.asarray(nibabel.load(str(realdata / "nifti/nibabel/anatomical.nii")).dataobj)
    plane = volume[:, :, 14].astype(np.float32)
    pixels = (np.clip(plane / np.percentile(plane, 99.5), 0, 1) * 255).astype(np.uint8)
    original = Image.fromarray(np.ascontiguousarray(np.rot90(pixels)), "L").resize((198, 246))
    w, h = original.size
    crop = original.crop(
        (round(0.09 * w), round(0.02 * h), w - round(0.01 * w), h - round(0.08 * h))
    )
    shifted = CropNearConfig()
    centred = CropNearConfig(scales=[0.9, 0.85, 0.8], offsets=[0.0])

    def distance(config: CropNearConfig) -> int:
        a, _ = crop_signals(original, config)
        b, _ = crop_signals(crop, config)
        # the full-image pHash, as near-dup stores it beside the windows
        full_a, full_b = (phash_pixels(_resize(im, (32, 32))) for im in (original, crop))
        return min_crop_distance((full_a, *a), (full_b, *b))

    assert distance(centred) > centred.max_hamming
    assert distance(shifted) <= shifted.max_hamming


def test_offsets_must_keep_windows_inside_the_image():
    with pytest.raises(ValueError, match="outside"):
        CropNearConfig(scales=[0.9], offsets=[0.0, 0.08])


def test_box_weights_average_areas():
    weights = box_weights(64, 16, 0.0, 1.0)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights[0, :4], 0.25) and np.allclose(weights[0, 4:], 0.0)
    half = box_weights(64, 16, 0.5, 1.0)
    assert np.allclose(half[0, 32:34], 0.5)


def test_prefilter_lets_crops_through_and_stops_unrelated_pairs_without_the_search():
    config = CropNearConfig()
    original = _texture(1)
    crop = original.crop((5, 20, 228, 232))
    _, big = crop_signals(_gray(original), config)
    _, small = crop_signals(_gray(crop), config)
    _, other = crop_signals(_gray(_texture(2).crop((5, 20, 228, 232))), config)
    aligner = CropAligner(config)
    ratio = (223 / 212) / 1.0
    assert config.prefilter_min is not None
    assert aligner.prefilter(big, small, ratio) >= config.prefilter_min
    assert aligner.score(big, small, ratio) == aligner.score(big, small, ratio, prefilter=False)
    assert aligner.prefilter(big, other, ratio) < config.prefilter_min
    assert aligner.score(big, other, ratio) < config.gradient_min


def test_prefilter_windows_made_once_equal_each_box_cut_for_the_pair():
    """The prefilter keeps every coarse box of a thumbnail (made once, reused by each pair);
    the boxes a pair's aspect ratio allows must be the ones it would cut on its own."""
    config = CropNearConfig()
    aligner = CropAligner(config)
    rng = np.random.default_rng(3)
    side = config.thumb_size
    thumbs = [rng.integers(0, 256, (side, side), dtype=np.uint8).tobytes() for _ in range(4)]
    grid = aligner._coarse_grid
    for ratio in (None, 0.95, 1.0, 1.06, 2.0):
        rows, cols = aligner._fitting(aligner.coarse_spans, aligner.coarse_spans, ratio)
        if not len(rows):  # no box has that shape
            assert aligner.prefilter(thumbs[0], thumbs[1], ratio) == -1.0
            continue
        for big, small in ((thumbs[0], thumbs[1]), (thumbs[2], thumbs[3]), (thumbs[0], thumbs[3])):
            pixels = np.frombuffer(big, dtype=np.uint8).reshape(side, side).astype(np.float32)
            cut = (grid[rows] @ pixels) @ grid[cols].transpose(0, 2, 1)
            flat = cut.reshape(len(rows), -1)
            flat = flat - flat.mean(axis=1, keepdims=True)
            flat /= np.linalg.norm(flat, axis=1, keepdims=True)
            target = aligner._coarse_target(small)
            expected = float((flat @ target).max())
            assert aligner.prefilter(big, small, ratio) == pytest.approx(expected, abs=1e-5)


def test_decisions_are_the_same_with_and_without_the_prefilter(planted):
    records = [p.record for p in planted]

    def decisions(prefilter: float | None) -> list:
        config = NearDedupConfig(
            caption={"enabled": False}, image={"crop": {"prefilter_min": prefilter}}
        )
        return [d.as_tuple() for d in find_near_duplicates(records, config)]

    with_filter = decisions(CropNearConfig().prefilter_min)
    assert with_filter == decisions(None)
    assert any(rid.startswith("cropped") or "crop" in rid for rid, _, _ in with_filter)


def test_vectorised_crop_candidates_agree_with_the_pairwise_distance(planted):
    from curate.dedup.confirm import PairConfirmer
    from curate.dedup.near import confirm_row, near_attributes

    config = NearDedupConfig(caption={"enabled": False})
    attrs = [near_attributes(p.record, config) for p in planted]
    crops = PairConfirmer([confirm_row(a, None) for a in attrs], config).crops
    assert crops is not None
    everyone = np.arange(len(attrs))
    for k in range(len(attrs)):
        got = crops.distances(k, everyone) <= config.image.crop.max_hamming
        for j in range(len(attrs)):
            a, b = attrs[k], attrs[j]
            near = (
                min_crop_distance((a.image_hash, *a.crop_hashes), (b.image_hash, *b.crop_hashes))
                <= config.image.crop.max_hamming
            )
            same_shape = a.pixels == b.pixels and a.aspect == b.aspect
            assert got[j] == (near and not same_shape), (k, j)


def test_max_checks_aligns_only_the_nearest_candidates(planted):
    from curate.dedup.confirm import PairConfirmer
    from curate.dedup.near import confirm_row, near_attributes

    # a wide candidate radius, so that one record has many candidates to choose from
    config = NearDedupConfig(
        caption={"enabled": False}, image={"crop": {"max_hamming": 24, "max_checks": None}}
    )
    rows = [confirm_row(near_attributes(p.record, config), None) for p in planted]
    everyone = np.arange(len(rows))
    unbounded = PairConfirmer(rows, config).crops
    assert unbounded is not None
    radius = config.image.crop.max_hamming
    busiest = max(
        range(len(rows)), key=lambda k: int((unbounded.distances(k, everyone) <= radius).sum())
    )
    others = everyone[everyone != busiest]
    distance = unbounded.distances(busiest, others)
    assert int((distance <= config.image.crop.max_hamming).sum()) > 5

    crop = config.image.crop.model_copy(update={"max_checks": 2})
    bounded = PairConfirmer(
        rows, config.model_copy(update={"image": config.image.model_copy(update={"crop": crop})})
    ).crops
    assert bounded is not None
    aligned: list[int] = []
    bounded.aligned = lambda a, b: aligned.append(b) or False  # type: ignore[method-assign]
    bounded.crops_of(busiest, others)
    nearest = others[np.argsort(distance, kind="stable")[:2]]
    assert aligned == nearest.tolist()
    # unbounded, every candidate is aligned
    unbounded.aligned = lambda a, b: aligned.append(b) or False  # type: ignore[method-assign]
    aligned.clear()
    unbounded.crops_of(busiest, others)
    assert len(aligned) == int((distance <= config.image.crop.max_hamming).sum())


def test_record_links_keep_the_crop_groups_and_drop_pairs_within_a_record(planted):
    """A record's full and window pHashes start linked in the crop search: the records it joins
    are those of the search without the links (pair by pair, `min_crop_distance`), and no edge
    pairs a record with itself."""
    from curate.dedup.groups import UnionFind
    from curate.dedup.near import crop_edges, near_attributes

    config = NearDedupConfig(caption={"enabled": False})
    attrs = [near_attributes(p.record, config) for p in planted]
    edges = crop_edges(attrs, config)
    assert edges and all(e.a != e.b for e in edges)
    linked, expected = UnionFind(), UnionFind()
    for e in edges:
        linked.union(e.a, e.b)
    limit = config.image.crop.max_hamming
    hashes = {a.record_id: (a.image_hash, *a.crop_hashes) for a in attrs if a.crop_hashes}
    ids = sorted(hashes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if min_crop_distance(hashes[a], hashes[b]) <= limit:
                expected.union(a, b)
    assert {rid: linked.find(rid) for rid in ids} == {rid: expected.find(rid) for rid in ids}


def _brute_nearest(hashes: np.ndarray, limit: int, nearest: int | None) -> set[tuple[int, int]]:
    """Each record's `nearest` partners within `limit` bits (ties: lower index), by every pair."""
    n = len(hashes)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        partners = []
        for j in range(n):
            if j != i:
                bits = min_crop_distance(hashes[i].tolist(), hashes[j].tolist())
                if bits <= limit:
                    partners.append((bits, j))
        for _, j in sorted(partners)[:nearest]:
            pairs.add((min(i, j), max(i, j)))
    return pairs


def _crowd(n: int, m: int, spread: int, seed: int) -> np.ndarray:
    """n records of m hashes each, all within a few bits of one hash (similar figures)."""
    rng = np.random.default_rng(seed)
    base = np.uint64(int(rng.integers(0, 2**63)))
    flips = rng.integers(0, 64, size=(n, m, spread))
    masks = (np.uint64(1) << flips.astype(np.uint64)).astype(np.uint64)
    return base ^ np.bitwise_xor.reduce(masks, axis=2)


@pytest.mark.parametrize("nearest", [None, 1, 3])
def test_crop_neighbours_are_exact_when_the_window_covers_the_group(nearest):
    from curate.dedup.imagehash import nearest_pairs

    hashes = _crowd(9, 3, 4, seed=1)  # 27 hashes: a window of 32 compares every pair
    usable = np.ones(len(hashes), dtype=bool)
    i, j = nearest_pairs(hashes, usable, 6, nearest, window=32)
    assert set(zip(i.tolist(), j.tolist())) == _brute_nearest(hashes, 6, nearest)
    usable[4] = False  # an unusable record pairs with nothing
    i, j = nearest_pairs(hashes, usable, 6, nearest, window=32)
    assert 4 not in set(i.tolist()) | set(j.tolist())


def test_crop_neighbours_stay_bounded_in_a_crowd_and_keep_the_close_pairs():
    """A crowd of similar figures: ~nearest pairs a record, not one per pair of records, and a
    planted pair 1 bit apart (a crop and its original) is still found."""
    from curate.dedup.imagehash import nearest_pairs

    hashes = _crowd(3000, 10, 6, seed=2)
    hashes[2999] = hashes[17] ^ np.uint64(1 << 40)
    i, j = nearest_pairs(hashes, np.ones(len(hashes), bool), 10, 16, window=32)
    assert len(i) <= 16 * 3000
    close = _brute_nearest(hashes[:40], 10, None)
    assert len(close) > 40 * 10  # the crowd: most records are candidates of each other
    assert (17, 2999) in set(zip(i.tolist(), j.tolist()))
    assert (i < j).all() and len(set(zip(i.tolist(), j.tolist()))) == len(i)


def test_splitting_every_group_changes_no_decision(planted):
    """With every candidate group split (records linked only by confirmed pairs among each
    record's nearest candidates and the given edges), the planted crops are dropped as with
    the exact keeper loop."""
    from curate.dedup import confirm

    records = [p.record for p in planted]
    exact = NearDedupConfig(split_groups_above=None)
    split = NearDedupConfig(split_groups_above=1)
    calls = []
    original = confirm.PairConfirmer.linked_pairs

    def counted(self, rows, given):
        calls.append(len(rows))
        return original(self, rows, given)

    try:
        confirm.PairConfirmer.linked_pairs = counted  # type: ignore[method-assign]
        got = find_near_duplicates(records, split)
    finally:
        confirm.PairConfirmer.linked_pairs = original  # type: ignore[method-assign]
    assert calls  # the split path ran
    want = find_near_duplicates(records, exact)
    assert want and got == want
    assert score(planted, [d.as_tuple() for d in got])["cropped"]["recall"] >= 0.8


def test_a_large_group_of_similar_figures_resolves_in_small_parts(monkeypatch):
    """Crop and pHash candidates chain 300 unrelated figures into one group: split, the keeper
    loop only meets the members of small parts (no record is confirmed against all the
    others), the pairs confirmed are a bounded number a record, and no figure is dropped."""
    from curate.dedup import groups
    from curate.dedup.confirm import CROP_CANDIDATE, IMAGE_REASON, PairConfirmer
    from curate.dedup.groups import Edge, resolve

    hashes = _crowd(300, 10, 6, seed=3)
    rng = np.random.default_rng(4)
    side = NearDedupConfig().image.crop.thumb_size
    rows = [
        {
            "record_id": f"r{k:03d}",
            "image_hash": int(hashes[k, 0]),
            "crop_hashes": [int(h) for h in hashes[k, 1:]],
            "crop_thumb": rng.integers(0, 256, side * side, dtype=np.uint8).tobytes(),
            "pixels": 10_000 + k,
            "aspect": 1.0,
        }
        for k in range(300)
    ]
    edges = [Edge(f"r{k:03d}", f"r{k + 1:03d}", CROP_CANDIDATE) for k in range(0, 299, 2)]
    edges += [Edge(f"r{k:03d}", f"r{k + 1:03d}", IMAGE_REASON) for k in range(1, 299, 2)]
    loops: list[int] = []
    keeper_loop = groups._keeper_loop

    def counted(order, confirmer, direct):
        loops.append(len(order))
        return keeper_loop(order, confirmer, direct)

    monkeypatch.setattr(groups, "_keeper_loop", counted)
    split = PairConfirmer(rows, NearDedupConfig(split_groups_above=64))
    checked: list[int] = []
    pairs_confirmed = split.pairs_confirmed
    split.pairs_confirmed = lambda a, b, crops: (
        checked.append(len(a)) or pairs_confirmed(a, b, crops)
    )  # type: ignore[method-assign]
    assert resolve(edges, split) == []
    assert max(loops, default=0) < 64
    assert sum(checked) <= 300 * (2 * 16 + 1)  # the nearest by pHash and gradient, and the edges
    loops.clear()
    assert resolve(edges, PairConfirmer(rows, NearDedupConfig(split_groups_above=None))) == []
    assert loops == [300]  # without the split the keeper loop meets the whole group
