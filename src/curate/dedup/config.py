"""Config models for near/semantic dedup, quality scoring and decontamination (spec section `dedup`).

Policy lives in `curation_rules/dedup/*.yaml`, where every parameter is written as
`name: {value: ..., why: "..."}`. A spec section may name a rule file with `rules:` and override
single values next to it; values not given come from the model defaults, which equal the shipped
rule files (a test keeps them in step).

    dedup:
      near: {rules: dedup/near_dedup.v1}
      semantic: {rules: dedup/semantic_dedup.v1, enabled: true}
      quality: {rules: dedup/quality.v1, min_clip_score: 0.2}
      decontam: {rules: dedup/decontam.v1, index: /data/bench_index}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.rules.backed import RuleBacked

# ---- near duplicates -----------------------------------------------------------------------


class CropNearConfig(BaseModel):
    """Crop-tolerant image near-dup (curate.dedup.crops); `enabled: false` adds nothing to the
    sidecar and proposes no crop pairs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    scales: list[float] = Field(default_factory=lambda: [0.85])
    # centres of the crop windows, shifted by these fractions of the width and height (every
    # x, y combination): an uneven crop moves the centre
    offsets: list[float] = Field(default_factory=lambda: [-0.03, 0.0, 0.03])
    max_hamming: int = Field(default=10, ge=0, le=32)
    # a kept record is aligned against at most this many of its crop candidates, the nearest by
    # pHash distance (None: all); bounds the work where similar figures crowd a group
    max_checks: int | None = Field(default=16, ge=1)
    thumb_size: int = Field(default=96, ge=32, le=128)
    max_cut: float = Field(default=0.1, ge=0.0, lt=0.5)
    step: float = Field(default=0.025, gt=0.0)
    refine_step: float = Field(default=0.00625, gt=0.0)
    aspect_tolerance: float | None = Field(default=0.03, ge=0.0)
    gradient_min: float = Field(default=0.995, ge=-1.0, le=1.0)
    # a cheap first look before the box search: crop boxes on a grid twice as coarse, compared
    # as 8x8 raw pixels; a pair below this correlation is no crop (None: always search)
    prefilter_min: float | None = Field(default=0.88, ge=-1.0, le=1.0)
    skip_same_shape: bool = True

    @model_validator(mode="after")
    def _windows_inside(self) -> CropNearConfig:
        room = (1 - max(self.scales, default=1.0)) / 2
        if any(abs(o) > room + 1e-9 for o in self.offsets):
            raise ValueError(
                f"crop offsets {self.offsets} move a window of scale {max(self.scales)} outside"
                f" the image: each must be within +/-{room:g}"
            )
        return self


class ImageNearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hash: Literal["phash", "dhash"] = "phash"
    max_hamming: int = Field(default=8, ge=0, le=32)
    confirm_dhash_max: int | None = Field(default=10, ge=0, le=64)
    # Confirmation beyond 64 bits (curate.dedup.confirm): gradient correlation of 32x32
    # thumbnails made in phase 1; None switches it off (hash thresholds alone decide).
    thumb_size: int = Field(default=32, ge=8, le=64)
    confirm_gradient_min: float | None = Field(default=0.985, ge=-1.0, le=1.0)
    confirm_coarse_gradient_min: float = Field(default=0.993, ge=-1.0, le=1.0)
    # ... or the gradients where neither thumbnail is at a highlight (a brightened copy clips
    # there); None switches this third test off.
    confirm_unclipped_gradient_min: float | None = Field(default=0.985, ge=-1.0, le=1.0)
    highlight_level: int = Field(default=230, ge=1, le=255)
    # A second way to propose pairs: the gradient hash of the thumbnail
    # (curate.dedup.confirm.gradient_hash) within this many bits; None: pHash alone proposes.
    # Needs the thumbnail check (confirm_gradient_min) on.
    gradient_hash_max: int | None = Field(default=8, ge=0, le=32)
    # ... and such a pair (its pHashes further apart than max_hamming) passes the usual checks,
    # or, with a number, must instead reach this 32x32 gradient correlation (a stricter gate)
    gradient_hash_confirm_min: float | None = Field(default=None, ge=-1.0, le=1.0)
    max_pixels: int = 200_000_000
    crop: CropNearConfig = Field(default_factory=CropNearConfig)
    # Resources, not policy: they change speed and memory, never the groups.
    chunk_size: int = Field(default=1 << 18, ge=1 << 10)
    beam_group_size: int = Field(default=100_000, ge=1)


class TextNearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    fields: list[str] = Field(default_factory=lambda: ["caption", "report_text"])
    shingle: Literal["word", "char"] = "word"
    shingle_size: int = Field(default=2, ge=1)
    num_perm: int = Field(default=128, ge=8)
    bands: int = Field(default=32, ge=1)
    rows: int = Field(default=4, ge=1)
    min_jaccard: float = Field(default=0.5, ge=0.0, le=1.0)
    min_tokens: int = Field(default=4, ge=0)
    seed: int = 1
    # Confirmation of caption pairs (curate.dedup.confirm): the cues that change a caption's
    # meaning must agree, and for figures the images must not be clearly different.
    same_cues: bool = True
    laterality_words: list[str] = Field(
        default_factory=lambda: [
            "left",
            "right",
            "bilateral",
            "unilateral",
            "ipsilateral",
            "contralateral",
        ]
    )
    negation_words: list[str] = Field(
        default_factory=lambda: [
            "no",
            "not",
            "without",
            "absent",
            "absence",
            "negative",
            "none",
            "never",
            "neither",
            "nor",
            "free",
            "lack",
            "lacking",
            "unremarkable",
            "normal",
            "abnormal",
        ]
    )
    image_different_phash_min: int | None = Field(default=20, ge=0, le=64)
    image_different_gradient_max: float = Field(default=0.5, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _bands_fit(self) -> TextNearConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands x rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})"
            )
        return self


class NearDedupConfig(RuleBacked):
    enabled: bool = True
    image: ImageNearConfig = Field(default_factory=ImageNearConfig)
    caption: TextNearConfig = Field(default_factory=TextNearConfig)
    keep: Literal["lowest_record_id", "highest_resolution"] = "highest_resolution"
    # how Beam labels the candidate groups (curate.dedup.components): "one_process" takes every
    # candidate edge's ids in one call and broadcasts the labels to the workers; "distributed"
    # finds the groups on the workers (`label_rounds` star rounds, then a union-find over the
    # labels of unfinished groups only) and routes rows by joins, one more shuffle of them
    group_labels: Literal["one_process", "distributed"] = "one_process"
    label_rounds: int = Field(default=4, ge=0)
    # a candidate group of more records than this is split before its keeper loop: records
    # link only by confirmed pairs, among each record's `split_neighbours` nearest by pHash,
    # by gradient hash and by crop windows (found among `split_window` sorted hashes:
    # curate.dedup.imagehash.nearest_pairs) and its given caption and image edges; None: never
    # split (the keeper loop meets every member of the group)
    split_groups_above: int | None = Field(default=256, ge=1)
    split_neighbours: int = Field(default=16, ge=1)
    split_window: int = Field(default=32, ge=1)


# ---- semantic duplicates ---------------------------------------------------------------------


class SemanticDedupConfig(RuleBacked):
    enabled: bool = False
    tower: Literal["text", "image"] = "text"
    n_clusters: int = Field(default=16, ge=1)
    sample_size: int = Field(default=20_000, ge=1)
    eps: float = Field(default=0.02, gt=0.0, lt=1.0)
    kmeans_iterations: int = Field(default=50, ge=1)
    seed: int = 0
    keep: Literal["lowest_record_id", "highest_resolution"] = "highest_resolution"
