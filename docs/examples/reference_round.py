"""One inner-loop round of the paper protocol, on one released SQuAD passage, shown step by step.

Takes the first passage of the reference's released `eval/gpt4_1_val.json` and its first GPT-4.1 completion, and
with the settings of `specs/knowledge/paper-qwen2.5-7b.yaml`:

1. prints the self-edit prompt the paper spec gives this passage (the reference's "implications" prompt);
2. builds and prints the training sequences (reference splitting rules, the '{title}\\n' prefix, the passage
   appended last), numbered as in the reference's TRAINING_SEQUENCE_TEMPLATE construction
   (knowledge-incorporation/src/utils.py:162-198), so they can be compared line by line;
3. prints the answer prompt of the passage's first question, as the lm-eval task renders it;
4. runs ONE inner-loop round (a fresh LoRA on q_proj/v_proj, r32/alpha64, 10 epochs, lr 1e-3, batch 1, loss on the
   EOS padding, answers greedy, stopped only by end-of-text) on the embedded SmolLM2-135M on CPU, and the same
   questions unadapted, through the toolkit's own round function (`seal_repro.knowledge.inner_loop.compute_round`).

What differs from the paper spec, to run on a CPU in minutes (each is printed): the model (SmolLM2-135M, float32,
CPU, instead of Qwen2.5-7B bf16 on a GPU); the padding length (every sequence is padded to 256 tokens instead of
2048, which keeps the loss on EOS padding but shrinks its share of the loss); the grader (the offline `contains`
grader, since GPT-4.1 needs an API key).

Run from the repository root:  python docs/examples/reference_round.py [--model-dir FOLDER]
(output of a run: docs/examples/reference_round.txt)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "knowledge" / "paper-qwen2.5-7b.yaml"
RELEASED = REPO.parent / "shared" / "data" / "seal-squad" / "eval" / "gpt4_1_val.json"
CPU_SEQ_LEN = 256  # instead of the paper's 2048 (see the docstring)


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}")


def cpu_spec(paper, data_file: Path, model_dir: Path):
    """The paper spec with the CPU changes above, re-validated (so every spec rule still holds)."""
    from seal_repro.spec.experiment import ExperimentSpec

    d = paper.model_dump(mode="json")
    d["model"] = {"source": "embedded", "dtype": "float32", "device": "cpu", "chat_template": False}
    d["data"] = {"kind": "seal_json", "path": str(data_file), "teacher_path": str(data_file), "n_passages": 1}
    d["inner_loop"]["max_seq_len"] = CPU_SEQ_LEN
    d["evaluation"]["grader"] = {"kind": "contains"}
    d["evaluation"]["batch_size"] = 8
    return ExperimentSpec.model_validate(d)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=str(REPO / "build" / "models" / "knowledge"),
                        help="the prepared embedded model folder (stage prepare_model's output; read only)")
    args = parser.parse_args()
    if not RELEASED.is_file():
        print(f"{RELEASED} is not here (the released SEAL files live beside the repository)", file=sys.stderr)
        return 2

    import torch

    from seal_repro.knowledge.inner_loop import Job, KitRecipe, Round, compute_round
    from seal_repro.knowledge.prepare import write_data
    from seal_repro.knowledge.prompts import self_edit_prompt
    from seal_repro.knowledge.sequences import TITLE_TEMPLATE, training_sequences
    from seal_repro.lmeval.knowledge import LmEvalQA
    from seal_repro.spec import load_spec

    torch.manual_seed(0)
    paper = load_spec(SPEC)
    article = json.loads(RELEASED.read_text(encoding="utf-8"))[0]
    with tempfile.TemporaryDirectory(prefix="reference-round-") as tmp:
        tmp = Path(tmp)
        one = tmp / "gpt4_1_val_first.json"  # the released record, alone
        one.write_text(json.dumps([article], ensure_ascii=False), encoding="utf-8")
        spec = cpu_spec(paper, one, Path(args.model_dir))
        (passage,), _ = write_data(spec, tmp / "data")  # passages.jsonl + questions.jsonl (with titles)
        completion = passage.teacher_self_edits[0]

        banner(f"Passage: {RELEASED.name}[0], title {passage.title!r}; {len(passage.questions)} questions")
        print(passage.context)

        banner("Self-edit prompt (self_edit.template: the reference's 'implications' prompt, "
               "make_squad_data.py:17-22)")
        print(repr(self_edit_prompt(spec.self_edit, passage.title, passage.context)))

        banner("GPT-4.1 completion 0 (the teacher self-edit trained on here), as released")
        print(repr(completion))

        il = spec.inner_loop
        seqs = training_sequences(completion, passage.title, passage.context, il)
        banner(f"Training sequences: split {il.split!r} with split_rules {il.split_rules!r} (split_newlines=True), "
               f"prefix_title {il.prefix_title} (template {TITLE_TEMPLATE!r}), append_passage {il.append_passage}\n"
               "The reference: build_train_sequences(completion, context, title, split_newlines=True), "
               "TRAINING_SEQUENCE_TEMPLATE = '{title}\\n{completion_text}'")
        for i, s in enumerate(seqs, 1):
            print(f"{i:2d} {s!r}")
        unsplit = training_sequences(completion, passage.title, passage.context,
                                     il.model_copy(update={"split": "segments"}))
        print(f"\nunsplit (split: segments = split_newlines=False, as CPT v1): {len(unsplit)} sequences, "
              f"the first starting {unsplit[0][:60]!r}")

        recipe = KitRecipe.of(spec, Path(args.model_dir), tmp / "data" / "questions.jsonl", LmEvalQA())
        t0 = time.perf_counter()
        kit = recipe()
        tok = kit.engine.tokenizer
        lengths = [len(tok(s, add_special_tokens=False)["input_ids"]) + 1 for s in seqs]  # + the EOS
        print(f"\ntokens per sequence with its EOS (SmolLM2 tokenizer): {lengths}; each padded to "
              f"{il.max_seq_len} with {tok.eos_token!r}, labels on the padding too")
        assert max(lengths) <= il.max_seq_len, "a sequence would be cut: raise CPU_SEQ_LEN"

        first = passage.questions[0]
        docs = {d["id"]: d for d in kit.scorer.docs}
        banner(f"Answer prompt of question 1 (evaluation.answer_prompt, rendered by the lm-eval task; "
               f"gold {first.answer!r})")
        print(repr(docs[first.id]["prompt"]))
        print(f"generation: greedy, at most {spec.evaluation.max_new_tokens} tokens, stop strings "
              f"{list(spec.evaluation.stop)} (end-of-text only; until = "
              f"{kit.scorer.task_dict['seal_knowledge_qa']._config.generation_kwargs['until']})")

        banner("One inner-loop round on the embedded model, CPU")
        print("paper settings kept: LoRA r{r}/alpha{a:g} on {t}, {e} epochs, lr {lr:g} {s} decay, batch {b}, "
              "grad_accum {g}, max_grad_norm {c}, loss on padding {p}; answers: {q}".format(
                  r=il.lora.rank, a=il.lora.alpha, t=list(il.lora.target_modules), e=il.epochs, lr=il.lr,
                  s=il.lr_schedule, b=il.batch_size, g=il.grad_accum, c=il.max_grad_norm, p=il.pad_to_max_len,
                  q="the reference's prompt, stop rule and length"))
        print(f"changed to run on a CPU: model SmolLM2-135M (embedded) float32 on cpu (paper: Qwen2.5-7B bf16, "
              f"cuda); sequences padded to {il.max_seq_len} tokens, not {paper.inner_loop.max_seq_len} (the same "
              f"steps; the EOS padding's share of the loss is smaller); grader: contains, not GPT-4.1")
        base = Round("base", passage, 0, None, 0, ())
        adapted = Round("teacher_synthetic", passage, 0, completion, 0, tuple(seqs))
        before = compute_round(kit, Job(base, spec))
        after = compute_round(kit, Job(adapted, spec))
        train = after["train"]
        print(f"\ntrained: {train['steps']} optimizer steps ({len(seqs)} sequences x {il.epochs} epochs, batch 1), "
              f"final loss {train['final_loss']:.4f}, {train['seconds']:.0f} s; seed {after['seed']} "
              f"(from the spec seed and the round's content); whole run {time.perf_counter() - t0:.0f} s")
        print("\nquestion | gold | unadapted answer (contains) | adapted answer (contains)")
        for q, b, a in zip(passage.questions, before["answers"], after["answers"]):
            print(f"- {q.question!r} | {q.answer!r} | {b['prediction']!r} ({b['contains']:.0f}) | "
                  f"{a['prediction']!r} ({a['contains']:.0f})")
        acc = [sum(r["contains"] for r in res["answers"]) / len(res["answers"]) for res in (before, after)]
        print(f"\naccuracy (contains grader): unadapted {acc[0]:.2f}, adapted {acc[1]:.2f}. A 135M model, so the "
              "numbers show the round runs end to end, not the paper's effect.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
