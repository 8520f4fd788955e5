"""The knowledge-incorporation domain: self-edit prompts, training sequences, the per-passage inner loop.

Domain code only: no DVC or lm-eval imports here (the stages and `lmeval_glue` import this, not the reverse).
"""
