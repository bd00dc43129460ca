"""Problems in YAML files reported as `file:line: message`, shared by specs and rule files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML document to its 1-based line (from the composed node tree)."""
    index: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = (*path, key_node.value)
                walk(value_node, key_path)
                index[key_path] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def nearest_line(index: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    loc = tuple(loc)
    while loc and loc not in index:
        loc = loc[:-1]
    return index.get(loc, 1)
