"""seal-repro: reproduce, ablate and extend SEAL (Self-Adapting Language Models)."""

__version__ = "0.1.0"
