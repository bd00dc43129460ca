"""Which folders a build may write to and delete in: its own, and nothing else.

A build folder is marked by `_work/state.json`, written by its first build. Before anything is
written or removed, a build refuses (one line, no traceback):

- an `--out` that is a file;
- an `--out` folder that holds anything but is not marked (a user's folder: `.`, a home or a
  repository): phase 2 rewrites `shards/`, `rejects/`, `errors/` ... and `--fresh` clears the
  build's entries, which must never be someone else's folders of the same name;
- a source that lies inside `--out` (a fresh build would delete its own input); the demo
  corpora generated under `_work/demo_input` are the build's own and allowed.

Inside a marked folder a build removes only the entries builds write (`layout.BUILD_ENTRIES`
and `_work`), so files a user put beside them stay.
"""

from __future__ import annotations

import os

from curate import fs
from curate.errors import SpecError
from curate.shards import layout
from curate.spec import DEMO_SCHEME, Spec

STATE = "state.json"


def state_path(out_dir: str) -> str:
    return fs.join(out_dir, layout.WORK, STATE)


def check_output_folder(out_dir: str, spec: Spec) -> None:
    if fs.is_local(out_dir) and os.path.isfile(out_dir):
        raise SpecError(f"--out {out_dir} is a file: give a folder for the build")
    _refuse_inputs_inside(out_dir, spec)
    if fs.exists(state_path(out_dir)):
        return  # a build folder: ours
    present = fs.sample_files(out_dir, 1) if _exists(out_dir) else []
    if present:
        raise SpecError(
            f"--out {out_dir} holds files that no curate build wrote (e.g. {present[0]}); "
            "give a new or empty folder"
        )


def _exists(path: str) -> bool:
    return os.path.isdir(path) if fs.is_local(path) else True


def _refuse_inputs_inside(out_dir: str, spec: Spec) -> None:
    if not fs.is_local(out_dir):
        out_prefix = out_dir.rstrip("/") + "/"
        inside = [s for s in spec.sources if (s.path.rstrip("/") + "/").startswith(out_prefix)]
    else:
        out_real = os.path.realpath(out_dir)
        inside = [
            s
            for s in spec.sources
            if not s.path.startswith(DEMO_SCHEME)
            and fs.is_local(s.path)
            and _within(os.path.realpath(s.path), out_real)
        ]
    if inside:
        source = inside[0]
        raise SpecError(
            f"source {source.label} ({source.path}) lies inside --out {out_dir}: a build "
            "rewrites and --fresh clears that folder; put the output elsewhere"
        )


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
