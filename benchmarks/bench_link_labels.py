"""Report-label quality: curate's linker + assertion vs a plain negspacy baseline, same texts.

Gold: tests/link/data/iu_dev_labels.csv and iu_holdout_labels.csv (hand labels; both were
studied while writing the v2 rules, so both are dev data now: tests/link/data/README.md; the
untuned held-out set is scored by label_quality.py) over the IU X-ray reports in
../shared/realdata/reports/iu_xray (text read from there, never copied).
Metric: micro precision / recall / F1 on positive findings over the 14 ChestX-ray14 labels
(uncertain counts as not positive, for gold and predictions alike). Target: F1 >= 0.90 and
better than the baseline.

Baseline: spaCy blank("en") + sentencizer + an EntityRuler with the SAME observation aliases
(lower-case phrase patterns) + negspacy's Negex with its `en_clinical` termset; a finding is
positive when one of its mentions is not negated.

Speed: the whole IU X-ray CSV (3,826 reports with text; findings + impression) labelled with
`chestxray14` by this tree and by today's code (a named git revision, run in a subprocess on the
same reports and KB; see benchmarks/label_quality.py): CPU seconds of the labelling loop (KB and
rules loaded before), fastest of --repeat runs taken in turns, and their ratio. Per-set
quality against both revisions: label_quality.py.

    .venv/bin/python benchmarks/bench_link_labels.py [--realdata DIR] [--kb DIR] [--verbose]
        [--baseline-rev REV | --no-speed] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "link" / "data"
GOLD_SETS = {"dev": DATA / "iu_dev_labels.csv", "holdout": DATA / "iu_holdout_labels.csv"}
from curate.enrich.link.labels import LabelSet  # noqa: E402

LABELS = list(
    LabelSet.load("chestxray14").names
)  # the 14 ChestX-ray14 findings, from the label set file


def load_reports(realdata: Path) -> dict[str, dict[str, str]]:
    path = realdata / "reports" / "iu_xray" / "indiana_reports.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            r["uid"]: {"findings": r["findings"], "impression": r["impression"]}
            for r in csv.DictReader(handle)
        }


def micro(gold: dict[str, set[str]], predicted: dict[str, set[str]]) -> tuple[float, float, float]:
    tp = sum(len(gold[u] & predicted[u]) for u in gold)
    fp = sum(len(predicted[u] - gold[u]) for u in gold)
    fn = sum(len(gold[u] - predicted[u]) for u in gold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def curate_predictions(reports, uids, kb_arg):
    from curate.enrich.link.config import LinkConfig
    from curate.enrich.link.stage import LinkStage

    stage = LinkStage(
        LinkConfig(
            enabled=True, kb=kb_arg, label_sets=["chestxray14"], fields=["findings", "impression"]
        )
    )
    stage.setup()
    started = time.perf_counter()
    out = {}
    for uid in uids:
        record = next(iter(stage.process({"record_id": uid, **reports[uid]})))
        out[uid] = {d["observation"] for d in record["derived_labels"] if d["value"] == "positive"}
    return out, time.perf_counter() - started


def negspacy_predictions(reports, uids):
    import spacy
    from negspacy.negation import Negex  # noqa: F401 - registers the "negex" factory
    from negspacy.termsets import termset

    from curate.enrich.link.labels import LabelSet

    label_set = LabelSet.load("chestxray14")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    ruler.add_patterns(
        [{"label": o.name, "pattern": alias} for o in label_set.observations for alias in o.aliases]
    )
    nlp.add_pipe(
        "negex",
        config={
            "neg_termset": termset("en_clinical").get_patterns(),
            "ent_types": [o.name for o in label_set.observations],
        },
    )
    started = time.perf_counter()
    out = {}
    for uid in uids:
        found = set()
        for text in reports[uid].values():
            if text.strip():
                found |= {ent.label_ for ent in nlp(text).ents if not ent._.negex}
        out[uid] = found
    return out, time.perf_counter() - started


def evaluate(set_name: str, gold_path: Path, reports, kb: str, verbose: bool) -> None:
    with gold_path.open(newline="") as handle:
        gold_rows = list(csv.DictReader(handle))
    uids = [r["uid"] for r in gold_rows]
    gold = {r["uid"]: {label for label in LABELS if r[label] == "1"} for r in gold_rows}
    ours, ours_s = curate_predictions(reports, uids, kb)
    base, base_s = negspacy_predictions(reports, uids)
    p1, r1, f1 = micro(gold, ours)
    p0, r0, f0 = micro(gold, base)
    positives = sum(len(v) for v in gold.values())
    print(
        f"\nIU X-ray {set_name} set ({gold_path.name}): {len(uids)} reports, {positives} positive "
        f"gold labels (14 ChestX-ray14 findings)"
    )
    print(f"{'system':<28}{'precision':>10}{'recall':>10}{'micro-F1':>10}{'seconds':>10}")
    print(f"{'curate link (chestxray14)':<28}{p1:>10.3f}{r1:>10.3f}{f1:>10.3f}{ours_s:>10.2f}")
    print(f"{'negspacy baseline':<28}{p0:>10.3f}{r0:>10.3f}{f0:>10.3f}{base_s:>10.2f}")
    print(
        f"F1 difference (curate - negspacy): {f1 - f0:+.3f}; target F1 >= 0.90: "
        f"{'met' if f1 >= 0.90 else 'NOT met'}"
    )
    if verbose:
        for uid in uids:
            for name, system in (("curate", ours), ("negspacy", base)):
                fp, fn = system[uid] - gold[uid], gold[uid] - system[uid]
                if fp or fn:
                    print(f"  {name:<9} uid {uid}: false+ {sorted(fp)} missed {sorted(fn)}")


def speed(reports, kb: str, rev: str, repeat: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from label_quality import predict_with_revision, timed_predict

    records = {u: r for u, r in reports.items() if (r["findings"] + r["impression"]).strip()}
    job = {"all": {"records": records, "label_set": "chestxray14"}}
    # interleaved (today, this tree, today, ...) so a change of machine load hits both alike
    base_runs, ours_runs = [], []
    for _ in range(repeat):
        base_runs.append(predict_with_revision(rev, job, kb)["all"]["seconds"])
        ours_runs.append(timed_predict(records, "chestxray14", kb)[1])
    base_s, ours_s = min(base_runs), min(ours_runs)
    print(
        f"\nSpeed: {len(records)} IU X-ray reports (findings + impression), chestxray14 labels, "
        f"fastest of {repeat} interleaved runs each"
    )
    print(f"{'system':<28}{'CPU s':>10}{'reports/s':>12}")
    print(f"{'today (' + rev + ')':<28}{base_s:>10.2f}{len(records) / base_s:>12.1f}")
    print(f"{'this tree':<28}{ours_s:>10.2f}{len(records) / ours_s:>12.1f}")
    print(f"speed ratio (this tree / today, reports per second): {base_s / ours_s:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_realdata = os.environ.get("CURATE_REALDATA", str(REPO.parent / "shared" / "realdata"))
    parser.add_argument("--realdata", type=Path, default=Path(default_realdata))
    parser.add_argument("--kb", default="default")
    parser.add_argument("--verbose", action="store_true", help="list every disagreement")
    parser.add_argument("--baseline-rev", default="8b87d3c", help="today's code for the speed run")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    parser.add_argument("--repeat", type=int, default=3, help="speed runs per system (fastest)")
    args = parser.parse_args()
    if not (args.realdata / "reports" / "iu_xray").is_dir():
        print(f"skipped: {args.realdata}/reports/iu_xray is absent", file=sys.stderr)
        return 0
    reports = load_reports(args.realdata)
    for set_name, gold_path in GOLD_SETS.items():
        evaluate(set_name, gold_path, reports, args.kb, args.verbose)
    if not args.no_speed:
        speed(reports, args.kb, args.baseline_rev, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
