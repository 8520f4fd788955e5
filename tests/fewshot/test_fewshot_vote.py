import random
import re

import pytest

from seal_repro.fewshot.augment import Chain, ReverseDemos, Symmetry, Upscale, family_transforms
from seal_repro.fewshot.grids import grid_to_text, text_to_grid
from seal_repro.fewshot.tasks import Task
from seal_repro.fewshot.vote import is_solved, predict_with_votes, task_solved, vote, vote_prompts

# rule: mirror left-right
T = Symmetry("flip_h")
TASK = Task(
    "0000abcd",
    train=tuple((g, T.apply(g)) for g in [((1, 2, 3), (0, 0, 4)), ((5, 0), (6, 7)), ((8, 8, 1),)]),
    test=(((((1, 0, 2), (3, 4, 0)), T.apply(((1, 0, 2), (3, 4, 0))))), ((((9, 1),), ((1, 9),)))),
)
TRANSFORMS = family_transforms("basic") + family_transforms("size") + [Chain(Symmetry("rot90"), Upscale(2)), ReverseDemos()]


def _query(prompt: str):
    """The last input grid of a prompt."""
    return text_to_grid(re.findall(r"Input:\n([\d\n]+?)\nOutput:\n", prompt)[-1])


def oracle(prompts):
    """Answers every (transformed) prompt with the equally transformed true output."""
    answers = {}
    for k, (inp, out) in enumerate(TASK.test):
        for t, p in vote_prompts(TASK, k, TRANSFORMS):
            answers[p] = grid_to_text(t.apply(out)) if hasattr(t, "fits") else grid_to_text(out)
    return [answers[p] for p in prompts]


def test_oracle_solves():
    attempts = predict_with_votes(TASK, oracle, TRANSFORMS)
    assert len(attempts) == 2
    assert attempts[0][0] == TASK.test[0][1] and attempts[1][0] == TASK.test[1][1]
    assert task_solved(attempts, TASK)


def test_random_model_does_not_solve():
    rng = random.Random(0)

    def noise(prompts):
        return ["\n".join("".join(str(rng.randint(0, 9)) for _ in range(3)) for _ in range(2)) for _ in prompts]

    attempts = predict_with_votes(TASK, noise, TRANSFORMS)
    assert all(len(a) <= 2 for a in attempts)
    assert not is_solved(attempts[0], TASK.test[0][1])
    assert not task_solved(attempts, TASK)


def test_garbage_outputs_cast_no_votes():
    attempts = predict_with_votes(TASK, lambda ps: ["I think the answer is blue"] * len(ps), TRANSFORMS)
    assert attempts == [[], []] and not task_solved(attempts, TASK)


def test_one_batched_call_identity_first_and_no_leak():
    calls = []

    def spy(prompts):
        calls.append(list(prompts))
        return [""] * len(prompts)

    predict_with_votes(TASK, spy, TRANSFORMS)
    assert len(calls) == 1
    prompts = calls[0]
    assert _query(prompts[0]) == TASK.test[0][0]  # identity first
    # demonstrations + the test input, nothing after the final "Output:" (the answer is never shown)
    assert all(p.endswith("Output:\n") and p.count("Input:") == len(TASK.train) + 1 for p in prompts)
    assert len(prompts) == 2 * (1 + len(TRANSFORMS))  # every transform fits these small grids


def test_unfitting_transform_skipped():
    wide = Task("0000ffff", train=((((1,) * 12,), ((1,) * 12,)),), test=((((2,) * 12,), ((2,) * 12,)),))
    names = [t.name for t, _ in vote_prompts(wide, 0, [Upscale(2), Upscale(3)])]
    assert names == ["identity", "upscale2"]


def test_vote_majority_and_ties():
    a, b, c = ((1,),), ((2,),), ((3,),)
    assert vote([a, b, b, None, c], 2) == [b, a]
    assert vote([c, a, a, c, b], 2) == [c, a]  # tie: first seen wins
    assert vote([None, None], 2) == []
    assert vote([a, b, c], 1) == [a]


def test_majority_beats_plain_prediction():
    wrong = ((0, 0, 0), (0, 0, 0))

    def mostly_right(prompts):
        outs = oracle(prompts)
        outs[0] = grid_to_text(wrong)  # the identity prompt of test 0 is wrong
        return outs

    attempts = predict_with_votes(TASK, mostly_right, TRANSFORMS, n_attempts=2)
    assert attempts[0] == [TASK.test[0][1], wrong]


def test_predict_fn_contract():
    with pytest.raises(ValueError, match="outputs for"):
        predict_with_votes(TASK, lambda ps: [], TRANSFORMS)
    with pytest.raises(ValueError, match="n_attempts"):
        predict_with_votes(TASK, oracle, TRANSFORMS, n_attempts=0)


def test_is_solved():
    g = ((1, 2),)
    assert is_solved([((0, 0),), g], g)
    assert not is_solved([], g)
    assert not is_solved([((1, 2), (1, 2))], g)
