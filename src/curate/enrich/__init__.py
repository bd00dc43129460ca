"""Per-record enrichment stages that need no model (modality keywords, text hashes)."""
