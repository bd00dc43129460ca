"""Versioned rule classes (mechanism) chosen and parameterised by `curation_rules/*.yaml` (policy).

`registry` (the mechanism), `builtin` and `image_quality` (the rules), `chain` (the catalogue
and the stage that applies rules), `files` (rule files), `backed` (configs read from rule
files), `similarity` (image-text score). Import what you need from those modules: this package
imports nothing, so a config that only needs `backed` does not load the image rules.
"""
