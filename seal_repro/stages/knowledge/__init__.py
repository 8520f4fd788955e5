"""Stages of the knowledge pipeline (dvc.yaml)."""
