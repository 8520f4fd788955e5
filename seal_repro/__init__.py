"""seal-repro: reproduce, ablate and extend SEAL (Self-Adapting Language Models)."""

from seal_repro import numerics as _numerics

# Before any tensor op of any process that imports the package: the portable CPU kernel path
# (seal_repro/numerics.py; SEAL_REPRO_CPU_NUMERICS=native turns it off).
_numerics.pin()

__version__ = "0.1.0"
