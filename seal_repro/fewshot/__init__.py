"""Few-shot ARC (SEAL's second domain): grids, augmentations, self-edits, test-time-training data, voting.

Everything here is pure Python with no language model; the trainer and the generation backend
plug in from outside (see `vote.predict_with_votes`, which takes the model as a callable).
"""
