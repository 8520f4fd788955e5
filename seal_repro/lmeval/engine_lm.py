"""`seal_engine`: lm-eval's HF model with the toolkit's generation, registered with lm-eval.

lm-eval stays the scoring harness — tasks, prompts, chat template, tokenization, the `until` cut, metrics,
filters, sample logs — and only `generate_until` changes: instead of HF `generate` in length-sorted batches,
the engine's batched generation (seal_repro/engine.py: a batch's shared prompt prefix prefilled once, and, when a
SlotBank is set on the model object (`lm.bank`), each document answered by the adapter its `slot` field names —
many inner-loop rounds in one call). Text is cut the way lm-eval's HF model cuts it (no stripping, first stop
string), so the stock `lm_eval --model hf … peft=…` path gives the same answers (tests/test_lmeval_task.py).
"""

from __future__ import annotations

import json

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from seal_repro.engine import generate


@register_model("seal_engine")
class EngineLM(HFLM):
    """Built like lm-eval's `hf` model (`pretrained=` a model object or folder, `peft=`, `batch_size=` …)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bank = None  # a seal_repro.multilora.SlotBank over this model's LoRA layers, while one is scored

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = [""] * len(requests)
        groups: dict[str, list[int]] = {}  # requests with the same generation settings share batches
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        for members in groups.values():
            kwargs = normalize_gen_kwargs(dict(requests[members[0]].args[1]), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = kwargs.pop("max_gen_toks")
            if kwargs.get("do_sample") or (kwargs.get("temperature") or 0) > 0:
                raise ValueError("seal_engine generates greedily; this task asks for sampling")
            slots = None if self.bank is None else [requests[i].doc.get("slot", 0) for i in members]
            texts = generate(self.model, self.tokenizer, [requests[i].args[0] for i in members],
                             max_new_tokens=max_new, stop=until, batch_size=int(self.batch_size), bank=self.bank,
                             slots=slots, strip_leading=False)
            for i, text in zip(members, texts):
                out[i] = postprocess_generated_text(generation=text, stop=until, think_end_token=None)
        return out
