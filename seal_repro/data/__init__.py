"""Passages and their questions: the fictional generator and loaders for real SQuAD-style files."""
