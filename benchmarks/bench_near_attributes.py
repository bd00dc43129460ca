"""Near-dup cost of the crop windows and the gradient hash, against the former settings.

Baseline ("v1 before shifted windows"): crop pHashes of the central 90/85/80% only, no
gradient hash, dHash <= 6, 64x64 crop thumbnails, no crop prefilter. Now: the 85% window at
3x3 shifts of +/-3% (9 pHashes), the gradient hash of the 32x32 thumbnail, dHash <= 10, 96x96
crop thumbnails and the raw-pixel prefilter (curation_rules/dedup/near_dedup.v1).

On one set in one run (demo figures of curate.demo.near_duplicates with planted copies, and
every slice of the TotalSegmentator CT and MR volumes of ../shared/realdata, upscaled 3x):

- phase 1 (per record, on workers): CPU ms per image of `near_attributes`;
- phase 2: candidate edges proposed by each search (pHash, gradient hash, crop windows) and
  CPU seconds of `find_near_duplicates_from_attributes` (the crop box search dominates);
  both best of 3 rounds with the two settings interleaved;
- the ratio now / baseline of each, and the drops each makes.

    .venv/bin/python benchmarks/bench_near_attributes.py [--realdata ../shared/realdata]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from curate.dedup.config import NearDedupConfig
from curate.dedup.near import (
    crop_edges,
    find_near_duplicates_from_attributes,
    gradient_edges,
    image_edges,
    near_attributes,
)
from curate.demo.near_duplicates import IMAGE_VARIANTS, generate

ROOT = Path(__file__).resolve().parents[1]


def baseline(config: NearDedupConfig) -> NearDedupConfig:
    crop = config.image.crop.model_copy(
        update={
            "scales": [0.9, 0.85, 0.8],
            "offsets": [0.0],
            "thumb_size": 64,
            "prefilter_min": None,
        }
    )
    image = config.image.model_copy(
        update={"crop": crop, "gradient_hash_max": None, "confirm_dhash_max": 6}
    )
    return config.model_copy(update={"image": image})


def records(realdata: Path) -> list[dict]:
    import nibabel

    out = [p.record for p in generate(150, 40, seed=5, variants=IMAGE_VARIANTS)]
    for name in ("example_ct", "example_mr_sm"):
        volume = np.asarray(
            nibabel.load(str(realdata / f"nifti/totalsegmentator/{name}.nii.gz")).dataobj
        ).astype(np.float32)
        lo, hi = np.percentile(volume, [0.5, 99.5])
        for k in range(volume.shape[2]):
            plane = (np.clip((volume[:, :, k] - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(
                np.uint8
            )
            image = Image.fromarray(np.ascontiguousarray(np.rot90(plane)), "L")
            image = image.resize((image.width * 3, image.height * 3), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=92)
            out.append({"record_id": f"{name}/{k:03d}", "image": buf.getvalue(), "caption": ""})
    return out


def _image_only(config: NearDedupConfig) -> NearDedupConfig:
    return config.model_copy(
        update={"caption": config.caption.model_copy(update={"enabled": False})}
    )


def measure(recs: list[dict], configs: dict[str, NearDedupConfig]) -> dict[str, dict]:
    """Best of 3 rounds, the settings interleaved in each (this machine is shared: a slow
    spell then hits both, not one)."""
    configs = {name: _image_only(c) for name, c in configs.items()}
    best = {name: {"phase1_ms": float("inf"), "phase2_s": float("inf")} for name in configs}
    attrs: dict[str, list] = {}
    for _ in range(3):
        for name, config in configs.items():
            started = time.process_time()
            attrs[name] = [near_attributes(r, config) for r in recs]
            ms = 1000 * (time.process_time() - started) / len(recs)
            started = time.process_time()
            drops = find_near_duplicates_from_attributes(attrs[name], config)
            seconds = time.process_time() - started
            best[name]["phase1_ms"] = min(best[name]["phase1_ms"], ms)
            best[name]["phase2_s"] = min(best[name]["phase2_s"], seconds)
            best[name]["drops"] = len(drops)
    for name, config in configs.items():
        crops = len(crop_edges(attrs[name], config))
        gradients = len(gradient_edges(attrs[name], config))
        best[name]["phash_edges"] = len(image_edges(attrs[name], config)) - crops - gradients
        best[name]["gradient_edges"] = gradients
        best[name]["crop_edges"] = crops
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=ROOT.parent / "shared" / "realdata")
    args = parser.parse_args()
    recs = records(args.realdata)
    now = NearDedupConfig.from_rules("dedup/near_dedup.v1")
    results = measure(recs, {"baseline": baseline(now), "now": now})
    print(f"{len(recs)} records (demo figures with planted copies + CT/MR slices)")
    print(f"{'':<16}{'baseline':>10}{'now':>10}{'ratio':>8}")
    for key in results["now"]:
        a, b = results["baseline"][key], results["now"][key]
        ratio = f"{b / a:8.2f}" if a else "       -"
        print(f"{key:<16}{a:>10.2f}{b:>10.2f}{ratio}")


if __name__ == "__main__":
    main()
