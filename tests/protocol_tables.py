"""What the two protocol tests (tests/knowledge/test_protocol.py, tests/fewshot/test_protocol.py) share: reading an
lm-eval task YAML (its `!function` tags kept as strings) and walking a dotted key path."""

from __future__ import annotations

from pathlib import Path

import yaml


def task_yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(path.read_text(), Loader=Loader)


def walk(value, path: str):
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"{path}: no key {part!r}"
        value = value[part]
    return value
