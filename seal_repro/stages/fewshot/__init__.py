"""Stages of the fewshot pipeline (dvc.yaml)."""
