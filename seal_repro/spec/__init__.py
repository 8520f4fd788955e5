"""Experiment specs: pydantic models (one module per section) and the YAML loader that builds them."""

from seal_repro.spec.loader import (
    PATH_KEYS,
    SPEC_MODELS,
    dump_spec_yaml,
    load_spec,
    resolve_spec_dict,
    spec_hash,
)

__all__ = ["PATH_KEYS", "SPEC_MODELS", "dump_spec_yaml", "load_spec", "resolve_spec_dict", "spec_hash"]
