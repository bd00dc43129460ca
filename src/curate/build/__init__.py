"""The build engine: a spec compiled into two Beam pipelines.

- `plan`: resolve source paths, discover input units, cut them into resumable tasks;
- `phase1`: per task, read -> parse -> rules -> enrich, written atomically with a done marker;
- `phase2`: exact/near/semantic dedup and decontamination on compact attributes, decisions
  applied to the full records, shards/rejects/errors/instructions written;
- `manifest`: fold outcomes and files into counts, identities and file digests;
- `driver`: the run, in that order.

Only this package, the `beam.py` modules beside a stage, `shards/beam.py` and `runners.py` know
Beam; stages and parsers are engine-free.
"""

from __future__ import annotations

from typing import Any


def build(loaded: Any, out_dir: str, runner: Any, *, fresh: bool = False) -> Any:
    from curate.build.driver import build as run_build

    return run_build(loaded, out_dir, runner, fresh=fresh)
