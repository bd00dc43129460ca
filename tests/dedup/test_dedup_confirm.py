"""Confirmation of near-duplicate candidates (curate.dedup.confirm): captions that differ in a
number, a side or a negation are not copies; graphics of one figure are never caption copies
of each other; adjacent slices of a real CT volume are not image copies while re-encoded copies
are; and a group keeps only members confirmed against its kept record."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curate.dedup.config import NearDedupConfig
from curate.dedup.confirm import PairConfirmer, caption_cues
from curate.dedup.groups import Edge, resolve
from curate.dedup.near import find_near_duplicates

CAPTION = (
    "Axial contrast enhanced CT shows a 5 mm hypodense lesion in the left hepatic lobe "
    "with surrounding edema and a small effusion."
)
CAPTION_ONLY = NearDedupConfig(image={"enabled": False})


def _captions(*texts: str) -> list[dict]:
    return [{"record_id": f"r{i}", "caption": t} for i, t in enumerate(texts)]


def _drops(records: list[dict], config: NearDedupConfig = CAPTION_ONLY) -> list[tuple]:
    return [d.as_tuple() for d in find_near_duplicates(records, config)]


@pytest.mark.parametrize(
    "changed",
    [
        CAPTION.replace("5 mm", "15 mm"),
        CAPTION.replace("5 mm", "5 cm"),
        CAPTION.replace("left", "right"),
        CAPTION.replace("with surrounding", "without surrounding"),
        CAPTION.replace("shows a", "shows no"),
    ],
)
def test_captions_differing_in_a_cue_are_not_copies(changed):
    assert _drops(_captions(CAPTION, changed)) == []


def test_reworded_and_reordered_captions_are_copies():
    dropped = CAPTION.replace("hypodense ", "")
    reordered = "With surrounding edema and a small effusion, " + CAPTION.split(" with ")[0] + "."
    assert caption_cues(reordered, CAPTION_ONLY.caption) == caption_cues(
        CAPTION, CAPTION_ONLY.caption
    )
    assert _drops(_captions(CAPTION, dropped)) == [("r1", "near_duplicate_caption", "r0")]
    assert caption_cues("5.0 mm", CAPTION_ONLY.caption) == caption_cues(
        "5 mm", CAPTION_ONLY.caption
    )


def test_graphics_of_one_figure_are_not_caption_copies():
    records = [
        {"record_id": f"PMC1/F1/{i}", "pmcid": "PMC1", "figure_id": "F1", "caption": CAPTION}
        for i in range(3)
    ]
    records.append(
        {"record_id": "PMC2/F4/0", "pmcid": "PMC2", "figure_id": "F4", "caption": CAPTION}
    )
    # the reprint in another article is a copy of the first graphic; the sibling graphics stay
    assert _drops(records) == [("PMC2/F4/0", "near_duplicate_caption", "PMC1/F1/0")]


def test_a_group_drops_only_members_confirmed_against_its_kept_record():
    class Pairs:
        handles = frozenset({"near_duplicate_image"})
        ids = ["a", "b", "c", "d", "x", "y"]

        def positions(self, record_ids):
            return np.array([self.ids.index(r) for r in record_ids], dtype=np.int64)

        def confirmed(self, keep, others):
            close = {("a", "b"), ("c", "d")}
            k = self.ids[keep]
            return [
                (j, "near_duplicate_image")
                for j, o in enumerate(self.ids[int(i)] for i in others)
                if (k, o) in close or (o, k) in close
            ]

    # a-b, b-c, c-d proposed (a chain of neighbours); only a-b and c-d confirmed
    edges = [Edge("a", "b", "near_duplicate_image"), Edge("b", "c", "near_duplicate_image")]
    edges.append(Edge("c", "d", "near_duplicate_image"))
    got = [d.as_tuple() for d in resolve(edges, Pairs())]
    assert got == [("b", "near_duplicate_image", "a"), ("d", "near_duplicate_image", "c")]
    # an edge of a reason the confirmer does not decide (semantic) stands as given
    semantic = [Edge("a", "x", "semantic_duplicate"), Edge("x", "y", "semantic_duplicate")]
    got = [d.as_tuple() for d in resolve(semantic, Pairs())]
    assert got == [("x", "semantic_duplicate", "a")]


def _png(pixels: np.ndarray, scale: float = 1.0, quality: int | None = None) -> bytes:
    image = Image.fromarray(pixels, "L")
    image = image.resize((image.width * 3, image.height * 3), Image.Resampling.BICUBIC)
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    buf = io.BytesIO()
    image.save(buf, "JPEG" if quality else "PNG", **({"quality": quality} if quality else {}))
    return buf.getvalue()


@pytest.mark.realdata
def test_adjacent_ct_slices_are_not_copies_but_reencoded_slices_are(realdata):
    import nibabel

    volume = np.asarray(
        nibabel.load(str(realdata / "nifti/totalsegmentator/example_ct.nii.gz")).dataobj
    ).astype(np.float32)
    window = (np.clip((volume + 200) / 600, 0, 1) * 255).astype(np.uint8)
    records = []
    for k in range(40, 70):
        plane = np.ascontiguousarray(np.rot90(window[:, :, k]))
        records.append({"record_id": f"s{k:03d}", "image": _png(plane), "caption": ""})
        if k % 5 == 0:
            copy = _png(plane, scale=0.6, quality=35)
            records.append({"record_id": f"s{k:03d}-copy", "image": copy, "caption": ""})
    config = NearDedupConfig(caption={"enabled": False})
    drops = _drops(records, config)
    # every copy joins its own slice; no slice is dropped for a neighbour
    assert sorted((d[0], d[2]) for d in drops) == [
        (f"s{k:03d}-copy", f"s{k:03d}") for k in range(40, 70, 5)
    ]
    # without the finer check the hashes alone chain neighbours together
    loose = NearDedupConfig(caption={"enabled": False}, image={"confirm_gradient_min": None})
    assert len(_drops(records, loose)) > len(drops)


def test_confirmer_without_thumbnails_falls_back_to_hashes():
    config = NearDedupConfig()
    rows = [
        {"record_id": "a", "image_hash": 0b1111, "confirm_hash": 0},
        {"record_id": "b", "image_hash": 0b0111, "confirm_hash": 1},
        {"record_id": "c", "image_hash": (1 << 64) - 1, "confirm_hash": 0},
    ]
    confirmer = PairConfirmer(rows, config)
    assert confirmer.confirm("a", ["b", "c", "unknown"]) == ["near_duplicate_image", None, None]


def test_sidecar_rows_carry_what_confirmation_reads():
    from curate.dedup.sidecar import near_sidecar_rows, near_sidecar_table, sidecar_attributes

    config = NearDedupConfig()
    pixels = (np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)
    record = {
        "record_id": "PMC1/F1/0",
        "pmcid": "PMC1",
        "figure_id": "F1",
        "image": _png(pixels),
        "caption": CAPTION,
    }
    rows = near_sidecar_rows([record], config)
    table = near_sidecar_table(rows, config)
    row = table.to_pylist()[0]
    assert len(row["thumb"]) == config.image.thumb_size**2
    assert row["cues"] == caption_cues(CAPTION, config.caption)
    assert row["figure_key"] == "PMC1/F1"
    back = sidecar_attributes(row)
    assert (back.thumb, back.cues, back.figure_key) == (row["thumb"], row["cues"], "PMC1/F1")
