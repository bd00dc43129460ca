"""Report-label quality: micro-F1 on positive findings, today's code vs this tree, same reports.

Sets (labels in tests/link/data, report text read in place from ../shared/realdata):
- `dev`: the 160 IU X-ray reports of iu_dev_labels.csv + iu_holdout_labels.csv, studied while
  writing the rules (their README lists every change made while looking at them);
- `heldout`: 200 IU X-ray reports drawn in December 2026 (iu_label_split.csv) and labelled by
  hand per docs/report_labelling_guideline.md (iu_heldout_labels_pass1.csv) before the
  labeller was run on them; never tuned on. Its errors are listed only with --show-heldout;
- `chexpert_labeler`: the 4 reports of the chexpert-labeler fixture, scored against the CheXpert
  labeller's own output (not human gold) on the chexpert14 set.
Positives only: uncertain counts as not positive, for gold and predictions alike (14
ChestX-ray14 findings; 14 CheXpert observations for the fixture).

"Today's code" is a named revision (--baseline-rev, default: the commit before issue 15),
exported with `git archive` into a temporary folder and run in a subprocess on the same reports
and KB. Agreement between two hand-labelling passes of the held-out set is printed when a
second pass exists (iu_heldout_labels_pass2.csv).

    .venv/bin/python benchmarks/label_quality.py [--sets dev,heldout] [--kb default]
        [--baseline-rev REV | --no-baseline] [--verbose] [--show-heldout]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "link" / "data"
BASELINE_REV = "8b87d3c"  # the tree before issue 15 (label sets v1, assertion v1)
CXR14 = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
CHEXPERT = {"1.0": "1", "-1.0": "-1", "0.0": "0", "": ""}


def default_realdata() -> Path:
    return Path(os.environ.get("CURATE_REALDATA", str(REPO.parent / "shared" / "realdata")))


# ---------------------------------------------------------------- gold sets


def _wide(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {
            r["uid"]: {k: v for k, v in r.items() if k != "uid" and v}
            for r in csv.DictReader(handle)
        }


def _long(path: Path, uids: list[str]) -> dict[str, dict[str, str]]:
    gold: dict[str, dict[str, str]] = {uid: {} for uid in uids}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["uid"] not in gold or row["observation"] not in CXR14:
                raise ValueError(f"{path}: unknown uid or observation in {row}")
            gold[row["uid"]][row["observation"]] = row["value"]
    return gold


def split_uids(name: str) -> list[str]:
    with (DATA / "iu_label_split.csv").open(newline="") as handle:
        return [r["uid"] for r in csv.DictReader(handle) if r["set"] == name]


def load_set(name: str, realdata: Path) -> dict:
    """{"label_set", "gold": uid -> {observation: value}, "records": uid -> record}."""
    if name == "chexpert_labeler":
        path = realdata / "reports" / "chexpert_labeler" / "labeled_reports.csv"
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        gold = {
            str(i): {k: CHEXPERT[v] for k, v in r.items() if k != "Reports" and v}
            for i, r in enumerate(rows)
        }
        records = {str(i): {"impression": r["Reports"]} for i, r in enumerate(rows)}
        return {"label_set": "chexpert14", "gold": gold, "records": records}
    with (realdata / "reports" / "iu_xray" / "indiana_reports.csv").open(newline="") as handle:
        reports = {r["uid"]: r for r in csv.DictReader(handle)}
    if name == "dev":
        gold = _wide(DATA / "iu_dev_labels.csv") | _wide(DATA / "iu_holdout_labels.csv")
        if sorted(gold) != sorted(split_uids("dev")):
            raise ValueError("iu_label_split.csv and the dev label files disagree")
    elif name == "heldout":
        gold = _long(DATA / "iu_heldout_labels_pass1.csv", split_uids("heldout"))
    else:
        raise ValueError(f"unknown set {name!r}")
    records = {
        uid: {"findings": reports[uid]["findings"], "impression": reports[uid]["impression"]}
        for uid in gold
    }
    return {"label_set": "chestxray14", "gold": gold, "records": records}


# ---------------------------------------------------------------- predicting


def predict(records: dict[str, dict], label_set: str, kb: str) -> dict[str, list[str]]:
    """uid -> positive observations, with whatever `curate` is importable (this tree or the
    baseline's, in the subprocess)."""
    return timed_predict(records, label_set, kb)[0]


def timed_predict(
    records: dict[str, dict], label_set: str, kb: str, repeat: int = 1
) -> tuple[dict[str, list[str]], float]:
    """`predict` and the seconds its labelling loop took (KB and rules loaded before; the
    fastest of `repeat` loops, each with a fresh stage so no cache carries over)."""
    best = None
    for _ in range(repeat):
        out, seconds = _timed_once(records, label_set, kb)
        best = seconds if best is None else min(best, seconds)
    assert best is not None
    return out, best


def _timed_once(
    records: dict[str, dict], label_set: str, kb: str
) -> tuple[dict[str, list[str]], float]:
    from curate.enrich.link import text as link_text
    from curate.enrich.link.config import LinkConfig
    from curate.enrich.link.stage import LinkStage

    for cached in ("normalise_token", "_tokenize"):  # start every run cold (this tree caches)
        if hasattr(getattr(link_text, cached, None), "cache_clear"):
            getattr(link_text, cached).cache_clear()
    fields = sorted({f for r in records.values() for f in r})
    stage = LinkStage(LinkConfig(enabled=True, kb=kb, label_sets=[label_set], fields=fields))
    stage.setup()
    out = {}
    started = time.process_time()  # CPU seconds: steadier than wall time on a shared machine
    for uid, record in records.items():
        labelled = next(iter(stage.process(dict(record))))
        out[uid] = sorted(
            d["observation"] for d in labelled["derived_labels"] if d["value"] == "positive"
        )
    return out, time.process_time() - started


def predict_with_revision(
    rev: str, jobs: dict[str, dict], kb: str, repeat: int = 1
) -> dict[str, dict]:
    """Runs `timed_predict` for every job with the code of git revision `rev`, in a
    subprocess: job name -> {"predicted": ..., "seconds": ...}."""
    with tempfile.TemporaryDirectory(prefix="curate-baseline-") as tmp:
        archive = Path(tmp) / "tree.tar"
        subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), rev]
            + ["src", "curation_rules", "schemas", "pipelines"],
            check=True,
            capture_output=True,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        request = Path(tmp) / "jobs.json"
        request.write_text(json.dumps({"jobs": jobs, "kb": kb, "repeat": repeat}))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        done = subprocess.run(
            [sys.executable, __file__, "--predict-jobs", str(request)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"baseline {rev} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- scoring


def positives(values: dict[str, str]) -> set[str]:
    return {k for k, v in values.items() if v == "1"}


def score(gold: dict[str, dict[str, str]], predicted: dict[str, list[str]]) -> dict:
    per_label: dict[str, Counter] = {}
    total: Counter = Counter()
    for uid, values in gold.items():
        want, got = positives(values), set(predicted[uid])
        for name in want | got:
            counts = per_label.setdefault(name, Counter())
            key = "tp" if name in want and name in got else "fn" if name in want else "fp"
            counts[key] += 1
            total[key] += 1
    return {"micro": prf(total), "per_label": {k: prf(v) for k, v in per_label.items()}}


def prf(c: Counter) -> dict:
    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "p": p,
        "r": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
    }


def cohen_kappa(a: list[str], b: list[str]) -> float:
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement(uids: list[str]) -> str | None:
    second = DATA / "iu_heldout_labels_pass2.csv"
    if not second.exists():
        return None
    one = _long(DATA / "iu_heldout_labels_pass1.csv", uids)
    two = _long(second, uids)
    lines = []
    for name, norm in (
        ("positive vs not", lambda v: "1" if v == "1" else ""),
        ("1 / -1 / blank", lambda v: v if v in ("1", "-1") else ""),
    ):
        a = [norm(one[u].get(o, "")) for u in uids for o in CXR14]
        b = [norm(two[u].get(o, "")) for u in uids for o in CXR14]
        same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
        pos = [(x, y) for x, y in zip(a, b, strict=True) if x or y]
        pos_same = sum(x == y for x, y in pos) / len(pos) if pos else 1.0
        lines.append(
            f"  {name:<16} cells {len(a)}: agreement {same:.4f}, on cells either pass marked "
            f"{pos_same:.3f} ({len(pos)}), Cohen's kappa {cohen_kappa(a, b):.3f}"
        )
    return "\n".join(lines)


def print_set(name: str, data: dict, systems: dict[str, dict], verbose: bool) -> None:
    gold = data["gold"]
    n_pos = sum(len(positives(v)) for v in gold.values())
    print(f"\n{name}: {len(gold)} reports, {n_pos} positive gold labels ({data['label_set']})")
    print(
        f"{'system':<22}{'precision':>10}{'recall':>10}{'micro-F1':>10}{'tp':>6}{'fp':>6}{'fn':>6}"
    )
    scores = {s: score(gold, pred) for s, pred in systems.items()}
    for system, sc in scores.items():
        m = sc["micro"]
        print(
            f"{system:<22}{m['p']:>10.3f}{m['r']:>10.3f}{m['f1']:>10.3f}{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}"
        )
    if "today" in scores and "this tree" in scores:
        diff = scores["this tree"]["micro"]["f1"] - scores["today"]["micro"]["f1"]
        print(f"micro-F1 difference (this tree - today): {diff:+.3f}")
    labels = sorted({k for sc in scores.values() for k in sc["per_label"]})
    print(f"  {'label':<20}" + "".join(f"{s + ' F1 (tp/fp/fn)':>28}" for s in scores))
    for label in labels:
        cells = []
        for sc in scores.values():
            v = sc["per_label"].get(label, prf(Counter()))
            cells.append(f"{v['f1']:.3f} ({v['tp']}/{v['fp']}/{v['fn']})")
        print(f"  {label:<20}" + "".join(f"{c:>28}" for c in cells))
    if verbose:
        for system, pred in systems.items():
            for uid, values in gold.items():
                want, got = positives(values), set(pred[uid])
                if want != got:
                    print(
                        f"  {system:<10} {uid}: false+ {sorted(got - want)} missed {sorted(want - got)}"
                    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="dev,heldout,chexpert_labeler")
    parser.add_argument("--realdata", type=Path, default=default_realdata())
    parser.add_argument("--kb", default="default")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="list disagreements (not heldout)")
    parser.add_argument("--show-heldout", action="store_true", help="also list heldout errors")
    parser.add_argument("--predict-jobs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.predict_jobs:  # the baseline subprocess
        request = json.loads(args.predict_jobs.read_text())
        out = {}
        for key, job in request["jobs"].items():
            predicted, seconds = timed_predict(
                job["records"], job["label_set"], request["kb"], request.get("repeat", 1)
            )
            out[key] = {"predicted": predicted, "seconds": seconds}
        print(json.dumps(out))
        return 0
    if not (args.realdata / "reports" / "iu_xray").is_dir():
        print(f"skipped: {args.realdata}/reports/iu_xray is absent", file=sys.stderr)
        return 0
    sets = {name: load_set(name, args.realdata) for name in args.sets.split(",")}
    ours = {name: predict(d["records"], d["label_set"], args.kb) for name, d in sets.items()}
    today = None
    if not args.no_baseline:
        jobs = {n: {"records": d["records"], "label_set": d["label_set"]} for n, d in sets.items()}
        today = predict_with_revision(args.baseline_rev, jobs, args.kb)
    for name, data in sets.items():
        systems = {"this tree": ours[name]}
        if today is not None:
            systems = {"today": today[name]["predicted"], **systems}
        show = args.verbose and (name != "heldout" or args.show_heldout)
        print_set(name, data, systems, show)
        if name == "heldout" and (text := agreement(list(data["gold"]))):
            print("hand-labelling agreement, pass 1 vs pass 2 (one annotator, same session):")
            print(text)
    if today is not None:
        print(f"\n'today' = git revision {args.baseline_rev} run on the same reports and KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
