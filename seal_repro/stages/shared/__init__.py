"""The stages both pipelines run, each with its own folders: resolve_spec and prepare_model."""
