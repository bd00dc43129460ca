"""Measured dedup and decontamination quality on labelled sets with hard negatives.

Images (real volumes from ../shared/realdata, read in place): every slice of a volume is a
record, and some slices get planted copies (re-encoded JPEG q25-50, resized to 40-80%,
brightness +/-15-25%, 5-10% border crops). Adjacent slices (and the two time points of an fMRI
run) are the hard negatives: a drop that keeps a record of another slice is a wrong merge.
The volumes are split: TUNE (TotalSegmentator CT, MR; the demo figures of
curate.demo.near_duplicates) chose `confirm_gradient_min` in curation_rules/dedup/near_dedup.v1;
DEV (nibabel fMRI slices and time points, anatomical MR, pydicom's CT2 series) was held out
for that choice, but its misses were then looked at to add `confirm_unclipped_gradient_min`,
so it is a dev set now; HELD-OUT (pydicom's enhanced MR `emri_small`, 10 frames, and enhanced
CT `eCT_Supplemental`, 2 frames) was added after that choice and never tuned on. It is small:
realdata holds no other independent volume with real pixels.

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
FAILURES: list[str] = []


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
    """A slice as a figure would show it: windowed to 8 bits, upscaled `scale` times (the
    TUNE/DEV volumes are small, so 3x)."""
    pixels = (np.clip((plane - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(np.rot90(pixels)), "L")
    if scale == 1:
        return image
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)


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
    """part -> [(name, slice images)]; a 4-D run gives one list per time point."""
    import nibabel
    import pydicom

    def nifti(rel: str) -> np.ndarray:
        return np.asarray(nibabel.load(str(realdata / rel)).dataobj).astype(np.float32)

    def series(volume: np.ndarray, lo: float | None = None, hi: float | None = None):
        lo = float(np.percentile(volume, 0.5)) if lo is None else lo
        hi = float(np.percentile(volume, 99.5)) if hi is None else hi
        return [_slice_image(volume[:, :, k], lo, hi) for k in range(volume.shape[2])]

    ct = nifti("nifti/totalsegmentator/example_ct.nii.gz")
    mr = nifti("nifti/totalsegmentator/example_mr_sm.nii.gz")
    fmri = nifti("nifti/nibabel/example4d.nii.gz")
    anat = nifti("nifti/nibabel/anatomical.nii")
    ct2 = sorted((realdata / "dicom/pydicom/dicomdirtests/77654033/CT2").glob("*"))
    ct2_planes = [pydicom.dcmread(p).pixel_array.astype(np.float32) for p in ct2]
    dicom_series = np.stack(ct2_planes, axis=2) if ct2_planes else None
    lo, hi = float(np.percentile(fmri, 0.5)), float(np.percentile(fmri, 99.5))
    held = [
        ("fmri_t0", series(fmri[..., 0], lo, hi)),
        ("fmri_t1", series(fmri[..., 1], lo, hi)),
        ("anatomical", series(anat)),
    ]
    if dicom_series is not None:
        held.append(("dicom_ct2", series(dicom_series)))
    return {
        "tune": [("ct", series(ct, -200, 400)), ("mr", series(mr))],
        "dev": held,
        "held_out": _fresh_volumes(realdata),
    }


def _fresh_volumes(realdata: Path) -> list[tuple[str, list[Image.Image]]]:
    """The HELD-OUT part: real enhanced multi-frame series, each frame a slice, upscaled to
    >= 192 pixels a side. (The Philips MPRAGE and Siemens MOSAIC files of realdata were meant
    to be here too, but their pixel data are all zero: nibabel ships them as header fixtures.)"""
    import pydicom

    def stack(frames: np.ndarray) -> list[Image.Image]:
        frames = frames.astype(np.float32)
        lo, hi = float(np.percentile(frames, 0.5)), float(np.percentile(frames, 99.5))
        scale = max(1, -(-192 // min(frames.shape[1:])))
        return [_slice_image(frame.T, lo, hi, scale) for frame in frames]

    dicom = realdata / "dicom"
    out = []
    for name in ("emri_small", "eCT_Supplemental"):
        out.append((name, stack(pydicom.dcmread(dicom / f"pydicom_data/{name}.dcm").pixel_array)))
    return out


def image_records(volumes: list[tuple[str, list[Image.Image]]], seed: int):
    """Records (every informative slice, plus copies of every other one) and each record's
    source: (volume, slice) for slices and copies, so a drop across sources is a wrong merge."""
    rng = np.random.default_rng(seed)
    records, source, variant = [], {}, {}
    for name, images in volumes:
        base = name.split("_t")[0]  # time points of one run: same slice, other record
        for k, image in enumerate(images):
            if np.asarray(image).std() < 8:
                continue  # blank slices outside the body
            rid = f"{name}/{k:03d}"
            records.append({"record_id": rid, "image": _jpeg(image), "caption": ""})
            source[rid], variant[rid] = (name, k), "slice"
            if name.endswith("_t1") or k % 2:
                continue
            kind = IMAGE_VARIANTS[(k // 2) % len(IMAGE_VARIANTS)]
            cid = f"{rid}/{kind}"
            records.append({"record_id": cid, "image": _variant(rng, image, kind), "caption": ""})
            source[cid], variant[cid] = (name, k), kind
        del base
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
    timepoints = [(a, b) for a, b in wrong if source[a][1] == source[b][1]]
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
    for kind in IMAGE_VARIANTS:
        copies = [rid for rid, v in variant.items() if v == kind]
        found = sum(keeper[c] == keeper[slice_of[source[c]]] for c in copies)
        out[kind] = found / len(copies) if copies else float("nan")
        out[f"{kind}_n"] = len(copies)
    return out


def image_section(realdata: Path, config: NearDedupConfig) -> None:
    print("== images: slices of real volumes (copies vs adjacent slices and time points)")
    loose = hashes_only(config)
    for part, volumes in _volumes(realdata).items():
        labelled = image_records(volumes, seed=0)
        base = score_images(*labelled, loose)
        print(
            f"  {part:<9} baseline (hashes only): precision {base['slice_precision']:.3f} with"
            f" adjacent slices ({base['neighbour_merges']} adjacent-slice merges)"
        )
        result = score_images(*labelled, config)
        slices = check(f"image {part} precision (adjacent slices)", result["slice_precision"], 0.99)
        print(
            f"  {part:<9} precision {slices} with adjacent slices"
            f" ({result['drops']} drops, {result['neighbour_merges']} adjacent-slice merges);"
            f" near-dup CPU {result['cpu_s']:.1f}s vs {base['cpu_s']:.1f}s hashes only"
        )
        if result["timepoint_merges"]:
            overall = check(f"image {part} precision (with time points)", result["precision"], 0.99)
            print(
                f"  {part:<9} precision {overall} counting time points"
                f" ({result['timepoint_merges']} merges of one fMRI slice's two time points:"
                " equal within noise at any thumbnail size, a known limit)"
            )
        for kind in IMAGE_VARIANTS:
            target = 0.8 if kind == "cropped" else 0.95
            print(
                f"    {kind:<10} recall {check(f'image {part} {kind}', result[kind], target)}"
                f" of {result[f'{kind}_n']}"
            )
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
    image = config.image.model_copy(update={"confirm_gradient_min": None, "crop": crop})
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
