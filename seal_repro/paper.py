"""The published SEAL numbers (arXiv 2506.10943, Tables/Figures as noted), for the "paper" column only.

Typed in from the paper and its reference code's released result files. Nothing in the toolkit copies
these into a measured metric: they are printed beside the toolkit's own numbers, never instead of them.
"""

KNOWLEDGE_SINGLE_PASSAGE = {  # Qwen2.5-7B, SQuAD, n = 1 (one LoRA per passage), GPT-4.1-graded
    "base": 0.327,
    "passage": 0.335,
    "base_synthetic": 0.397,
    "teacher_synthetic": 0.463,  # passage + GPT-4.1 synthetic data
    "seal": 0.470,
}
KNOWLEDGE_SEAL_ITERATIONS = {0: 0.397, 1: 0.427, 2: 0.470}
KNOWLEDGE_CPT_LORA = {  # n = 200, paper v1 (LoRA), matches the released result files
    "base": 0.3224, "passage": 0.3224, "base_synthetic": 0.4097, "teacher_synthetic": 0.3943, "seal": 0.4384,
}
KNOWLEDGE_CPT_FULL = {"teacher_synthetic": 0.594, "seal": 0.582}  # paper v2: full fine-tuning
FEWSHOT_ARC = {"icl": 0.0, "ttt_no_rl": 0.20, "seal": 0.725, "oracle_ttt": 1.0}  # Llama-3.2-1B-Instruct

CONDITION_LABELS = {
    "base": "Base model",
    "passage": "Train on passage",
    "base_synthetic": "Train on passage + synthetic (base model)",
    "teacher_synthetic": "Train on passage + synthetic (teacher)",
    "seal": "SEAL",
    "icl": "ICL (no adaptation)",
    "ttt_no_rl": "TTT + self-edit (no RL)",
    "oracle_ttt": "Oracle TTT",
}
