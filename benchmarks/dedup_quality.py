"""Measured dedup and decontamination quality on labelled sets with hard negatives.

Images (real volumes and images from ../shared/realdata, read in place): every slice of a
volume is a record, shown as a figure would show it (windowed to 8 bits, upscaled to >= 192
pixels a side, at least 3x), and some slices get planted copies (re-encoded JPEG q25-50,
resized to 40-80%, brightness +/-15-25%, 5-10% border crops). Adjacent slices are the hard
negatives: a drop that keeps a record of another slice is a wrong merge. The parts, in the
order they were made and what was learnt from each:

- TUNE (TotalSegmentator CT, MR; the demo figures of curate.demo.near_duplicates) chose the
  thresholds of curation_rules/dedup/near_dedup.v1.
- DEV (nibabel fMRI and anatomical MR slices, pydicom's CT2 series): held out for the first
  choice; its misses then led to `confirm_unclipped_gradient_min`, `confirm_dhash_max` 10 and
  the shifted crop windows (`crop.offsets`).
- HELD-OUT (pydicom's enhanced MR `emri_small`, 10 frames, and enhanced CT `eCT_Supplemental`,
  2 frames): never tuned on, and small.
- DEV_IMAGES (25 distinct real DICOM images: CT, MR, DX, CR, NM, US, palette and colour US, test
  patterns; each with one copy of every variant, plus `found`: the other files of realdata that
  hold the same picture in another codec, size or lookup table). Held out until its first run,
  which measured precision 1.000, recall re-encoded 0.960, resized 0.960, brightness 0.880,
  crops 0.840, found 0.667; its misses (a stripe ramp whose pHash moves 22-30 bits) led to the
  gradient hash, so it is a dev set now. `found` is reported, not a target: its copies are
  not one controlled variant, and two of the six are an NM whole-body scan against a lossy
  JPEG 2000 file of it whose compression blurred it to about 1/8 of its resolution, a change
  none of the planted variants makes.
- DEV_SERIES (nibabel's NIfTI-2 example, 12 slices; highdicom's slide tiles, blank, so
  skipped). The RT dose grid first held out with it is the DOSE_PLANES part below.

DOSE_PLANES (pydicom's RT dose grid: 15 planes of 10x10 shown at 200 px) is reported apart, as
a known limit. Held out until its first run (gradient hash on): precision 0.500, 9 adjacent
planes merged. The planes are one ramp with 0.1% noise: any two differ by 0.5-2.9 gray levels
RMS (median 1.4), what a JPEG re-encoding changes in one (q50 0.9, q25 1.3-1.4), and every thumbnail
feature tried (32x32, 16x16, unclipped and 64x64 gradients) puts the planes as close to each
other as to their copies. A stricter gate for pairs only the gradient hash proposes
(`gradient_hash_confirm_min` 0.995) kept the planes apart but lost a real MR brightness copy of
DEV_IMAGES (0.9918) and the planes' own re-encoded copies, so the gate is off (see the rule
file) and these planes merge like the time points below.

TIME POINTS (nibabel's `functional.nii`: 20 time points of 3 slices, real scanner noise between
them; pydicom's 30-frame ultrasound cine loop) are reported apart, as a known limit: the time
points of one slice differ only by acquisition noise (1 - r of the thumbnails 0.002-0.014), as
close as a re-encoded or resized copy (up to 0.007, 0.024 for a brightened colour figure), so
no image-content threshold keeps one and drops the other; a build keeps them apart only when
they arrive as volumes (`volume_index`), not as figures. (nibabel's `example4d.nii.gz` is not
used for this: its second volume equals the first in 62% of voxels, differing by 3% of the
intensity spread, less than a JPEG re-encode: a fixture copy, not a second acquisition.)

Captions (real IU X-ray report texts): each chosen text gets variants; positives drop one word
or reorder two sentences; hard negatives change a number, flip left/right or add/remove a
negation, which the confirmation must refuse (0 merges).

Decontamination (verbatim, paraphrases, false positives): benchmarks/decontam_quality.py,
run here as the last section.

Crops (curate.dedup.crops): `crop.max_hamming` and `crop.gradient_min` were chosen on TUNE
only (crops' best-box correlation 0.9959-0.9984 vs adjacent slices <= 0.9890); the crop
search's confirmation time is printed per part.

Targets: image precision >= 0.99 with neighbours present, recall >= 0.95 per copy variant and
>= 0.8 on crops; 0 caption merges across hard negatives, recall >= 0.9 on word-drop and
reorder; >= 0.9 of verbatim questions found whatever their length, >= 0.7 of held-out
paraphrases, false positives <= 1%.
Exits non-zero when a target fails.

Run: .venv/bin/python benchmarks/dedup_quality.py [--realdata ../shared/realdata]
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from curate.dedup.config import NearDedupConfig
from curate.dedup.near import find_near_duplicates
from curate.demo.near_duplicates import generate, score

ROOT = Path(__file__).resolve().parents[1]
IMAGE_VARIANTS = ("reencoded", "resized", "brightness", "cropped")
# Parts whose neighbours differ by noise alone (module docstring): measured, not targets.
KNOWN_LIMITS = {"dose_planes": "planes that differ by noise alone: a known limit, not a target"}
FAILURES: list[str] = []


def shown(value: float) -> str:
    return f"{value:.3f}"


def check(name: str, value: float, target: float, higher: bool = True) -> str:
    ok = value >= target if higher else value <= target
    if not ok:
        FAILURES.append(f"{name}: {value:.3f} (target {'>=' if higher else '<='} {target})")
    return f"{value:.3f} {'ok' if ok else 'FAIL'}"


# ---- images: slices of real volumes ---------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _slice_image(plane: np.ndarray, lo: float, hi: float, scale: int = 3) -> Image.Image:
    """A slice windowed to 8 bits and upscaled `scale` times."""
    pixels = (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(np.rot90(pixels)), "L")
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)


def _figure_scale(plane_shape: tuple[int, ...], least: int) -> int:
    """How a figure shows a slice: at least `least` times and at least 192 pixels a side (the
    builds' `image_min_side` floor is 64: a 16-pixel slice at 3x would not reach near-dup)."""
    return max(least, -(-192 // min(plane_shape)))


def _series(
    volume: np.ndarray, lo: float | None = None, hi: float | None = None, least: int = 3
) -> list[Image.Image]:
    """The slices (last axis) of a 3-D volume as figure images, windowed to [lo, hi] (default:
    the 0.5-99.5 percentiles), upscaled at least `least` times."""
    lo = float(np.percentile(volume, 0.5)) if lo is None else lo
    hi = float(np.percentile(volume, 99.5)) if hi is None else hi
    scale = _figure_scale(volume.shape[:2], least)
    return [_slice_image(volume[:, :, k], lo, hi, scale) for k in range(volume.shape[2])]


def _variant(rng: np.random.Generator, image: Image.Image, kind: str) -> bytes:
    w, h = image.size
    if kind == "reencoded":
        return _jpeg(image, int(rng.integers(25, 51)))
    if kind == "resized":
        scale = float(rng.uniform(0.4, 0.8))
        return _jpeg(image.resize((int(w * scale), int(h * scale)), Image.Resampling.LANCZOS))
    if kind == "brightness":
        factor = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.25) + 1)
        return _jpeg(ImageEnhance.Brightness(image).enhance(factor))
    cut = float(rng.uniform(0.05, 0.10))
    box = (
        int(w * cut * rng.random()),
        int(h * cut * rng.random()),
        w - int(w * cut * rng.random()),
        h - int(h * cut * rng.random()),
    )
    return _jpeg(image.crop(box))


def _volumes(realdata: Path) -> dict[str, list[tuple[str, list[Image.Image]]]]:
    """part -> [(name, slice images)]; a 4-D run gives one list per time point (`NAME_tNN`)."""
    import nibabel
    import pydicom

    def nifti(rel: str) -> np.ndarray:
        return np.asarray(nibabel.load(str(realdata / rel)).dataobj).astype(np.float32)

    ct = nifti("nifti/totalsegmentator/example_ct.nii.gz")
    mr = nifti("nifti/totalsegmentator/example_mr_sm.nii.gz")
    fmri = nifti("nifti/nibabel/example4d.nii.gz")[..., 0]
    anat = nifti("nifti/nibabel/anatomical.nii")
    ct2 = sorted((realdata / "dicom/pydicom/dicomdirtests/77654033/CT2").glob("*"))
    ct2_planes = [pydicom.dcmread(p).pixel_array.astype(np.float32) for p in ct2]
    dev = [("fmri", _series(fmri)), ("anatomical", _series(anat))]
    if ct2_planes:
        dev.append(("dicom_ct2", _series(np.stack(ct2_planes, axis=2))))
    run = nifti("nifti/nibabel/functional.nii")
    lo, hi = float(np.percentile(run, 0.5)), float(np.percentile(run, 99.5))
    cine = _frames(realdata / "dicom/pydicom/examples_ybr_color.dcm")
    return {
        "tune": [("ct", _series(ct, -200, 400)), ("mr", _series(mr))],
        "dev": dev,
        "held_out": _fresh_volumes(realdata),
        "dev_series": _series_two(realdata),
        "dose_planes": [("rtdose", _frames(realdata / "dicom/pydicom/rtdose.dcm"))],
        "time_points": [
            (f"functional_t{t:02d}", _series(run[..., t], lo, hi)) for t in range(run.shape[3])
        ]
        + [(f"us_cine_t{t:02d}", [frame]) for t, frame in enumerate(cine)],
    }


def _frames(path: Path) -> list[Image.Image]:
    """The frames of a multi-frame DICOM as figure images (RGB stays RGB)."""
    import pydicom

    frames = pydicom.dcmread(path).pixel_array
    if frames.ndim == 4:  # (frames, rows, cols, 3): pydicom gives colour as RGB
        scale = _figure_scale(frames.shape[1:3], least=1)
        return [
            Image.fromarray(f.astype(np.uint8), "RGB").resize(
                (f.shape[1] * scale, f.shape[0] * scale), Image.Resampling.BICUBIC
            )
            for f in frames
        ]
    return _series(np.transpose(frames.astype(np.float32), (2, 1, 0)), least=1)


def _series_two(realdata: Path) -> list[tuple[str, list[Image.Image]]]:
    """DEV_SERIES (see the module docstring): nibabel's NIfTI-2 example (first volume, 12
    slices) and highdicom's slide-microscopy tiles (25 RGB frames, each tile its own image;
    blank, so none passes the informative-slice filter). The RT dose grid that was here is the
    DOSE_PLANES part now."""
    import nibabel

    dicom = realdata / "dicom"
    nifti2 = np.asarray(
        nibabel.load(str(realdata / "nifti/nibabel/example_nifti2.nii.gz")).dataobj
    ).astype(np.float32)
    return [
        ("nifti2", _series(nifti2[..., 0])),
        ("slide_tiles", _frames(dicom / "highdicom/sm_image.dcm")),
    ]


def _fresh_volumes(realdata: Path) -> list[tuple[str, list[Image.Image]]]:
    """The HELD-OUT part: real enhanced multi-frame series, each frame a slice. (The Philips
    MPRAGE and Siemens MOSAIC files of realdata were meant to be here too, but their pixel data
    are all zero: nibabel ships them as header fixtures.)"""
    import pydicom

    dicom = realdata / "dicom"
    out = []
    for name in ("emri_small", "eCT_Supplemental"):
        frames = pydicom.dcmread(dicom / f"pydicom_data/{name}.dcm").pixel_array
        # frames are (n, rows, cols); _series takes slices on the last axis, transposed as before
        out.append((name, _series(np.transpose(frames.astype(np.float32), (2, 1, 0)), least=1)))
    return out


def _run_name(name: str) -> str:
    """The run a volume belongs to: `functional_t07` -> `functional`."""
    head, sep, tail = name.rpartition("_t")
    return head if sep and tail.isdigit() else name


def image_records(volumes: list[tuple[str, list[Image.Image]]], seed: int):
    """Records (every informative slice, plus copies of every other one) and each record's
    source: (volume, slice) for slices and copies, so a drop across sources is a wrong merge."""
    rng = np.random.default_rng(seed)
    records, source, variant = [], {}, {}
    for name, images in volumes:
        for k, image in enumerate(images):
            if np.asarray(image).std() < 8:
                continue  # blank slices outside the body
            rid = f"{name}/{k:03d}"
            records.append({"record_id": rid, "image": _jpeg(image), "caption": ""})
            source[rid], variant[rid] = (name, k), "slice"
            if k % 2 or (name != _run_name(name) and not name.endswith("_t00")):
                continue  # copies of every other slice (of a run's first time point only)
            kind = IMAGE_VARIANTS[(k // 2) % len(IMAGE_VARIANTS)]
            cid = f"{rid}/{kind}"
            records.append({"record_id": cid, "image": _variant(rng, image, kind), "caption": ""})
            source[cid], variant[cid] = (name, k), kind
    for r in records:
        with Image.open(io.BytesIO(r["image"])) as im:
            r["image_width"], r["image_height"] = im.size
    return records, source, variant


# Distinct real single images of realdata (CT, MR, DX, CR, NM, US, colour and palette US, test
# patterns), each shown at >= 192 pixels a side; and, per original, the other files in realdata
# that hold the same picture (another codec, size or lookup table): copies made by others.
SINGLE_IMAGES = {
    "ct_small": "pydicom/CT_small.dcm",
    "dx": "highdicom/dx_image.dcm",
    "mr_256": "nibabel/0.dcm",
    "mr_384": "nibabel/slicethickness_empty_string.dcm",
    "ct_693": "pydicom_data/693_UNCI.dcm",
    "ct_j2k": "pydicom/J2K_pixelrep_mismatch.dcm",
    "nm": "pydicom/JPEG2000.dcm",
    "mr_small": "pydicom/MR_small.dcm",
    "mr_overlay": "pydicom/examples_overlay.dcm",
    "us_palette": "pydicom/examples_palette.dcm",
    "us_rgb": "pydicom/examples_rgb_color.dcm",
    "pattern_dfl": "pydicom/image_dfl.dcm",
    "pattern_lut": "pydicom_data/mlut_18.dcm",
    "mr_siemens": "pydicom_data/MR-SIEMENS-DICOM-WithOverlays.dcm",
    "mr_1024": "pydicom_data/MR2_UNCI.dcm",
    "cr_rg1": "pydicom_data/RG1_J2KR.dcm",
    "cr_rg3": "pydicom_data/RG3_J2KR.dcm",
    "us_lossless": "pydicom_data/JPGLosslessP14SV1_1s_1f_8b.dcm",
    "us_ob": "pydicom_data/OBXXXX1A.dcm",
    "us_colour_pl": "pydicom_data/color-pl.dcm",
    "us_aloka": "pydicom_data/gdcm-US-ALOKA-16.dcm",
    "ct_vr_un": "pydicom_data/explicit_VR-UN.dcm",
    "ct_bad_seq": "pydicom_data/bad_sequence.dcm",
    "text_gbr": "pydicom/GDCMJ2K_TextGBR.dcm",
    "us_small": "pydicom/ExplVR_BigEnd.dcm",
}
WILD_COPIES = {
    "mr_256": ["nibabel/1.dcm"],
    "nm": ["pydicom/JPGExtended.dcm", "pydicom_data/JPEG-LL.dcm"],
    "us_rgb": ["pydicom_data/US1_UNCI.dcm", "pydicom/examples_jpeg2k.dcm"],
    "pattern_lut": ["pydicom_data/vlut_04.dcm"],
}


def _dicom_figure(path: Path) -> Image.Image:
    """A DICOM image as a figure would show it: first frame, palette and colour as RGB,
    greyscale windowed to its 0.5-99.5 percentiles (MONOCHROME1 inverted), >= 192 pixels."""
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    kind = str(ds.PhotometricInterpretation)
    if kind == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        if pixels.dtype != np.uint8:
            pixels = pixels.astype(np.float32) * (255.0 / max(float(pixels.max()), 1.0))
    if pixels.ndim == 3:  # pydicom gives colour as RGB
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    else:
        plane = pixels.astype(np.float32)
        lo, hi = float(np.percentile(plane, 0.5)), float(np.percentile(plane, 99.5))
        gray = (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(255 - gray if kind == "MONOCHROME1" else gray, "L")
    scale = _figure_scale((image.height, image.width), least=1)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
    return image


def single_image_records(realdata: Path, seed: int):
    """The DEV_IMAGES part: every original with one copy of each planted variant, plus
    the copies found in realdata (variant `found`). Sources as in `image_records`."""
    rng = np.random.default_rng(seed)
    dicom = realdata / "dicom"
    records, source, variant = [], {}, {}

    def add(rid: str, data: bytes, name: str, kind: str) -> None:
        records.append({"record_id": rid, "image": data, "caption": ""})
        source[rid], variant[rid] = (name, 0), kind

    for name, rel in SINGLE_IMAGES.items():
        image = _dicom_figure(dicom / rel)
        add(name, _jpeg(image), name, "slice")
        for kind in IMAGE_VARIANTS:
            add(f"{name}/{kind}", _variant(rng, image, kind), name, kind)
        for k, other in enumerate(WILD_COPIES.get(name, [])):
            add(f"{name}/found{k}", _jpeg(_dicom_figure(dicom / other)), name, "found")
    for r in records:
        with Image.open(io.BytesIO(r["image"])) as im:
            r["image_width"], r["image_height"] = im.size
    return records, source, variant


def score_images(records, source, variant, config: NearDedupConfig) -> dict[str, float]:
    started = time.process_time()
    decisions = [d.as_tuple() for d in find_near_duplicates(records, config)]
    seconds = time.process_time() - started
    keeper = {r["record_id"]: r["record_id"] for r in records}
    for rid, _, kept in decisions:
        keeper[rid] = kept
    wrong = [(rid, kept) for rid, _, kept in decisions if source[rid] != source[kept]]
    timepoints = [
        (a, b)
        for a, b in wrong
        if source[a][1] == source[b][1] and _run_name(source[a][0]) == _run_name(source[b][0])
    ]
    slices_only = len(decisions) - len(timepoints)
    out: dict[str, float] = {
        "drops": len(decisions),
        "precision": 1 - len(wrong) / len(decisions) if decisions else 1.0,
        "slice_precision": 1 - (len(wrong) - len(timepoints)) / slices_only if slices_only else 1.0,
        "neighbour_merges": len(wrong) - len(timepoints),
        "timepoint_merges": len(timepoints),
        "cpu_s": seconds,
    }
    slice_of = {source[rid]: rid for rid, v in variant.items() if v == "slice"}
    for kind in (*IMAGE_VARIANTS, "found"):
        copies = [rid for rid, v in variant.items() if v == kind]
        found = sum(keeper[c] == keeper[slice_of[source[c]]] for c in copies)
        out[kind] = found / len(copies) if copies else float("nan")
        out[f"{kind}_n"] = len(copies)
    return out


def image_section(realdata: Path, config: NearDedupConfig) -> None:
    print("== images: slices of real volumes (copies vs adjacent slices and time points)")
    loose = hashes_only(config)
    parts = {part: image_records(volumes, seed=0) for part, volumes in _volumes(realdata).items()}
    parts["dev_images"] = single_image_records(realdata, seed=0)
    for part, labelled in parts.items():
        base = score_images(*labelled, loose)
        print(
            f"  {part:<9} baseline (hashes only): precision {base['slice_precision']:.3f} with"
            f" adjacent slices ({base['neighbour_merges']} adjacent-slice merges)"
        )
        result = score_images(*labelled, config)
        limit = part in KNOWN_LIMITS  # reported, not targets: see the module docstring
        name = f"image {part} precision (adjacent slices)"
        slices = (
            shown(result["slice_precision"])
            if limit
            else check(name, result["slice_precision"], 0.99)
        )
        print(
            f"  {part:<9} precision {slices} with adjacent slices"
            f" ({result['drops']} drops, {result['neighbour_merges']} adjacent-slice merges);"
            f" near-dup CPU {result['cpu_s']:.1f}s vs {base['cpu_s']:.1f}s hashes only"
            + (f" [{KNOWN_LIMITS[part]}]" if limit else "")
        )
        if result["timepoint_merges"]:
            # not a target: see the module docstring (time points differ by noise alone)
            print(
                f"  {part:<9} precision {result['precision']:.3f} counting time points"
                f" ({result['timepoint_merges']} merges of one slice's time points: a known"
                " limit, not a target)"
            )
        for kind in (*IMAGE_VARIANTS, "found"):
            if not result[f"{kind}_n"]:
                continue
            target = 0.8 if kind == "cropped" else 0.95
            if limit or kind == "found":
                value = f"{shown(result[kind])} (reported, not a target)"
            else:
                value = check(f"image {part} {kind}", result[kind], target)
            print(f"    {kind:<10} recall {value} of {result[f'{kind}_n']}")
    planted = generate(150, 40, seed=5, variants=IMAGE_VARIANTS)
    image_only = config.model_copy(
        update={"caption": config.caption.model_copy(update={"enabled": False})}
    )
    result = score(
        planted,
        [d.as_tuple() for d in find_near_duplicates([p.record for p in planted], image_only)],
    )
    print(
        f"  demo figures (seed 5) precision {check('demo precision', result['all']['precision'], 0.99)}"
    )
    for kind in IMAGE_VARIANTS:
        target = 0.8 if kind == "cropped" else 0.95
        print(f"    {kind:<10} recall {check(f'demo {kind}', result[kind]['recall'], target)}")


# ---- captions: real report texts with hard negatives -------------------------------------------

_NUM = re.compile(r"\b(\d+(?:\.\d+)?)\b")
_SIDES = {"left": "right", "right": "left"}


def caption_variants(text: str, rng: np.random.Generator) -> dict[str, str]:
    words = text.split()
    out: dict[str, str] = {}
    # a meaning-preserving drop: not a side, a negation or a number (those are hard negatives)
    cues = {"left", "right", "bilateral", "without", "absent", "negative", "normal", "abnormal"}
    plain = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 3 and w.lower() not in cues]
    if plain:
        drop = int(rng.choice(plain))
        out["word_drop"] = " ".join(words[:drop] + words[drop + 1 :])
    sentences = [s for s in re.split(r"(?<=\.)\s+", text) if s]
    if len(sentences) >= 2:
        i = int(rng.integers(len(sentences) - 1))
        sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
        out["reorder"] = " ".join(sentences)
    if _NUM.search(text):
        out["number"] = _NUM.sub(lambda m: str(int(float(m.group(1))) + 10), text, count=1)
    side = next((w for w in re.findall(r"[a-z]+", text.lower()) if w in _SIDES), None)
    if side:
        out["laterality"] = re.sub(rf"\b{side}\b", _SIDES[side], text, count=1, flags=re.I)
    if re.search(r"\bno\b", text, flags=re.I):
        out["negation"] = re.sub(r"\bno\s+", "", text, count=1, flags=re.I)
    elif re.search(r"\bthere is\b", text, flags=re.I):
        out["negation"] = re.sub(r"\bthere is\b", "there is no", text, count=1, flags=re.I)
    return out


def iu_texts(realdata: Path) -> list[str]:
    path = realdata / "reports" / "iu_xray" / "indiana_reports.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [f"{r['findings']} {r['impression']}".strip() for r in rows]
    return [t for t in texts if len(t.split()) >= 12]


def hashes_only(config: NearDedupConfig) -> NearDedupConfig:
    """The named baseline: the former checks (pHash + dHash, caption shingles) without the
    thumbnail, crop search, cue and image confirmation; each drop still checked against its kept record."""
    crop = config.image.crop.model_copy(update={"enabled": False})
    image = config.image.model_copy(
        update={
            "confirm_gradient_min": None,
            "crop": crop,
            "gradient_hash_max": None,
            "confirm_dhash_max": 6,  # the former operating point
        }
    )
    caption = config.caption.model_copy(
        update={"same_cues": False, "image_different_phash_min": None}
    )
    return config.model_copy(update={"image": image, "caption": caption})


def caption_merges(records, kind_of, base_of, config) -> dict[str, float]:
    decisions = [d.as_tuple() for d in find_near_duplicates(records, config)]
    keeper = {r["record_id"]: r["record_id"] for r in records}
    for rid, _, kept in decisions:
        keeper[rid] = kept
    out = {}
    for kind in ("word_drop", "reorder", "number", "laterality", "negation"):
        members = [v for v, k in kind_of.items() if k == kind]
        out[kind] = sum(keeper[v] == keeper[base_of[v]] for v in members) / max(1, len(members))
        out[f"{kind}_n"] = len(members)
    return out


def caption_section(realdata: Path, config: NearDedupConfig) -> None:
    print("== captions: IU X-ray texts, positives vs hard negatives")
    rng = np.random.default_rng(1)
    texts = sorted(set(iu_texts(realdata)))
    chosen = [texts[int(i)] for i in rng.choice(len(texts), 400, replace=False)]
    records, kind_of, base_of = [], {}, {}
    for i, text in enumerate(chosen):
        rid = f"t{i:04d}"
        records.append({"record_id": rid, "caption": text})
        for kind, variant in caption_variants(text, rng).items():
            vid = f"{rid}/{kind}"
            records.append({"record_id": vid, "caption": variant})
            kind_of[vid], base_of[vid] = kind, rid
    caption_only = config.model_copy(
        update={"image": config.image.model_copy(update={"enabled": False})}
    )
    base = caption_merges(records, kind_of, base_of, hashes_only(caption_only))
    print(
        "  baseline (shingles only): merged "
        + ", ".join(
            f"{k} {base[k]:.2f}"
            for k in ("word_drop", "reorder", "number", "laterality", "negation")
        )
    )
    result = caption_merges(records, kind_of, base_of, caption_only)
    for kind in ("word_drop", "reorder", "number", "laterality", "negation"):
        members = [None] * int(result[f"{kind}_n"])
        merged = result[kind]
        if kind in ("word_drop", "reorder"):
            shown = check(f"caption {kind} recall", merged, 0.9)
            print(f"  {kind:<10} recall {shown} of {len(members)}")
        else:
            shown = check(f"caption {kind} merges", merged * len(members), 0, higher=False)
            print(f"  {kind:<10} merges {shown} of {len(members)} (hard negatives)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--realdata", type=Path, default=ROOT.parent / "shared" / "realdata")
    args = parser.parse_args()
    config = NearDedupConfig.from_rules("dedup/near_dedup.v1")
    image_section(args.realdata, config)
    caption_section(args.realdata, config)
    import decontam_quality  # benchmarks/decontam_quality.py (this folder is on sys.path)

    decontam_quality.run(check, args.realdata)
    if FAILURES:
        print("FAILED:\n  " + "\n  ".join(FAILURES))
        sys.exit(1)
    print("all targets met")


if __name__ == "__main__":
    main()
