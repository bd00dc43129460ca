"""curate: medical multimodal training-data curation.

Training machines import only `curate.shards` and `curate.train`; neither pulls in Beam,
the sources, the parsers or the rules.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_shards"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import curate` stays cheap and imports no torch until load_shards is used.
    if name == "load_shards":
        from curate.shards.loader import load_shards

        return load_shards
    raise AttributeError(name)
