"""Measuring helpers shared by the benchmarks: synchronised timing, dense-matmul FLOP/s, generation
throughput, peak memory."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from typing import Sequence


def sync(device) -> None:
    import torch

    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


@contextmanager
def timed(device, into: list[float]):
    """Append the block's wall time to `into`, with the GPU's queued work finished on both ends."""
    sync(device)
    t0 = time.perf_counter()
    yield
    sync(device)
    into.append(time.perf_counter() - t0)


def matmul_flops(m: int, k: int, n: int, *, device, dtype, min_seconds: float = 0.25, max_reps: int = 200) -> float:
    """FLOP/s of `torch.matmul` of an (m×k) by a (k×n) matrix: 2·m·k·n per product, best of a few timed batches."""
    import torch

    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: library initialisation, kernel choice
    sync(device)
    t0 = time.perf_counter()
    torch.matmul(a, b)
    sync(device)
    once = max(time.perf_counter() - t0, 1e-6)
    reps = max(1, min(max_reps, int(min_seconds / 3 / once)))
    best = float("inf")
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2.0 * m * k * n / best


def count_tokens(tokenizer, texts: Sequence[str]) -> int:
    """Tokens in the generated texts (re-tokenized): the useful output, not the padding a batch also decodes."""
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def generation_throughput(engine, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int) -> dict:
    """Tokens/s of the engine's greedy generation: batched (left-padded) vs one prompt at a time."""
    engine.generate(prompts[:1], max_new_tokens=2, batch_size=1)  # warm-up
    batched_t: list[float] = []
    with timed(engine.device, batched_t):
        batched = engine.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    single_t: list[float] = []
    with timed(engine.device, single_t):
        single = [engine.generate([p], max_new_tokens=max_new_tokens, batch_size=1)[0] for p in prompts]
    b_tok, s_tok = count_tokens(engine.tokenizer, batched), count_tokens(engine.tokenizer, single)
    return {
        "batched_tokens_per_s": b_tok / batched_t[0], "sequential_tokens_per_s": s_tok / single_t[0],
        "batched_tokens": b_tok, "sequential_tokens": s_tok, "same_outputs": batched == single,
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb(device) -> float:
    import torch

    if getattr(device, "type", device) != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated() / 2**20
