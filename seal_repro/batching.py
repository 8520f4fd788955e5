"""How a round's training sequences become the tensors of each step: batches, then padded or packed rows.

Two layouts, the same loss (the mean over the batch's target tokens) and the same gradients up to float rounding:

  padded  one row per sequence, right-padded to the batch's longest; batches are length-grouped and close early
          rather than carry more padding than real tokens, since padding is computed like any token.
  packed  a batch's sequences laid end to end in rows of about PACK_ROW_TOKENS (or the longest sequence's
          length), balanced so little is padding; `position_ids` restart at 0 for every sequence, and transformers then
          confines attention to each sequence (a block-diagonal causal mask). Only the rows' tails are padding,
          so batches keep exactly `batch_size` sequences.

Why by hand: transformers' DataCollatorWithFlattening packs a whole batch into one row (an attention cost
quadratic in the batch, all of it under the mask on a CPU); we want several balanced rows, and the padded
layout to fall back on.
"""

from __future__ import annotations

from typing import Sequence

import torch

Encoded = tuple[list[int], list[int]]  # (input ids, labels; -100 = no loss)

MIN_PADDING_BOUND = 64  # tokens of padding a padded batch may always carry (a CPU step costs ~0.2 s whatever its size)
# The length packed rows aim at (a longer sequence gets a row of its own length). Longer rows cost attention
# quadratic in the row, all of it computed under the mask: on SmolLM2-135M on a CPU one row of 8 x 64 tokens
# trains ~20% slower than 8 rows of 64, while shorter rows pay more padding and per-row overhead.
PACK_ROW_TOKENS = int(__import__("os").environ.get("PACK_ROW_TOKENS", 256))


def random_batches(n: int, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """A shuffled order cut into batches of `batch_size` (the last may be smaller): the packed layout's batches."""
    order = torch.randperm(n, generator=gen).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def length_grouped_batches(encoded: Sequence[Encoded], batch_size: int, gen: torch.Generator,
                           bound_padding: bool = True) -> list[list[int]]:
    """Shuffled batches of similar-length sequences: the padded layout's batches (padding is wasted compute).

    Shuffle, cut into mega-batches of 8 batches, sort each mega-batch by length, cut into batches of at most
    `batch_size`, then shuffle the batch order — random across epochs, little padding within a batch. With
    `bound_padding` a batch also closes early rather than let padding exceed its real tokens (and
    MIN_PADDING_BOUND tokens: below that a step's fixed cost outweighs the padding): a self-edit's short lines
    and the long passage appended to them would otherwise share a batch padded to the passage.
    """
    order = torch.randperm(len(encoded), generator=gen).tolist()
    if batch_size == 1:
        return [[i] for i in order]
    mega = 8 * batch_size
    batches = []
    for m in range(0, len(order), mega):
        chunk = sorted(order[m : m + mega], key=lambda i: len(encoded[i][0]))
        current: list[int] = []
        real = 0
        for i in chunk:
            n = len(encoded[i][0])  # ascending, so n is the width the batch would pad to
            padding = n * (len(current) + 1) - (real + n)
            if current and (len(current) == batch_size or (bound_padding and padding > max(real + n, MIN_PADDING_BOUND))):
                batches.append(current)
                current, real = [], 0
            current.append(i)
            real += n
        if current:
            batches.append(current)
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def pack_rows(lengths: Sequence[int]) -> list[list[int]]:
    """Indices into `lengths` grouped into rows of about equal length, the number of rows that brings them
    nearest PACK_ROW_TOKENS (or the longest sequence, if longer); each sequence, longest first, goes to the
    shortest row so far, so padding the rows to the longest costs little. Deterministic."""
    total, longest = sum(lengths), max(lengths)
    n_rows = max(1, round(total / max(longest, PACK_ROW_TOKENS)))
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    load = [0] * n_rows
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = min(range(n_rows), key=load.__getitem__)
        rows[r].append(i)
        load[r] += lengths[i]
    return [r for r in rows if r]


def collate_padded(batch: Sequence[Encoded], pad_id: int, *, width: int | None = None,
                   loss_on_padding_id: int | None = None) -> dict:
    """One right-padded row per sequence. `width` pads further (the reference's max_length padding);
    `loss_on_padding_id` labels the padding with that id, as the reference's copied labels did."""
    width = width or max(len(ids) for ids, _ in batch)
    ids_t = torch.full((len(batch), width), pad_id, dtype=torch.long)
    lab_t = torch.full((len(batch), width), -100, dtype=torch.long)
    att_t = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, labels) in enumerate(batch):
        n = len(ids)
        ids_t[i, :n] = torch.tensor(ids)
        lab_t[i, :n] = torch.tensor(labels)
        att_t[i, :n] = 1
        if loss_on_padding_id is not None:
            lab_t[i, n:] = loss_on_padding_id
    return {"input_ids": ids_t, "attention_mask": att_t, "labels": lab_t}


def collate_packed(batch: Sequence[Encoded], pad_id: int) -> dict:
    """The batch's sequences end to end in `pack_rows` rows. Each sequence's first label is dropped (-100):
    the shifted loss would otherwise train the previous sequence's last token to predict it, a target the
    padded layout does not have. A row's padding tail is a block of its own (positions from 0, no labels),
    so no real token attends to it; attention_mask stays None, which is what makes transformers read the
    position_ids as packed sequences."""
    rows = [[batch[i] for i in row] for row in pack_rows([len(ids) for ids, _ in batch])]
    width = max(sum(len(ids) for ids, _ in row) for row in rows)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    lab_t = torch.full((len(rows), width), -100, dtype=torch.long)
    pos_t = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for ids, labels in row:
            n = len(ids)
            ids_t[r, at : at + n] = torch.tensor(ids)
            lab_t[r, at + 1 : at + n] = torch.tensor(labels[1:], dtype=torch.long)
            pos_t[r, at : at + n] = torch.arange(n)
            at += n
        pos_t[r, at:] = torch.arange(width - at)
    return {"input_ids": ids_t, "labels": lab_t, "position_ids": pos_t}
