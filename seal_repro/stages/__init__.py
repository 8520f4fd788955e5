"""DVC stage entry points: each `python -m seal_repro.stages.<folder>.<name>` is one stage of dvc.yaml.

A stage is argument parsing → the resolved spec → one call into its domain → outputs (the call writes them).
`knowledge/` and `fewshot/` hold each domain's stages; `shared/` the two both pipelines run (resolve_spec,
prepare_model); `helpers.py` what every stage shares. No stage imports another stage.
"""
