"""DVC stage entry points: each `python -m seal_repro.stages.<name>` is one stage of dvc.yaml, same name."""
