"""Sub-commands of the `seal-repro` CLI, one module each."""
