"""Models and adapters are read from safetensors only (never unpickled), and a model's own code runs only when its
spec sets `model.trust_remote_code: true`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from seal_repro import models, policy
from seal_repro.errors import UserError
from seal_repro.spec import load_spec
from seal_repro.spec.model import ModelSpec

PACKAGE = Path(__file__).resolve().parents[1] / "seal_repro"


@pytest.fixture
def pickled_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with its weights as a pickle (pytorch_model.bin) instead of safetensors."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def _spec(path, **kw) -> ModelSpec:
    return ModelSpec(source="local", path=str(path), chat_template=False, **kw)


def _one_line_error(info) -> str:
    [line] = info.value.lines
    assert "\n" not in line
    return line


def test_a_pickle_only_model_is_refused_when_loaded(pickled_model):
    with pytest.raises(UserError) as info:
        models.load(_spec(pickled_model), pickled_model)
    line = _one_line_error(info)
    assert "pytorch_model.bin" in line and "pickle" in line and "safetensors" in line


def test_a_pickle_only_model_is_refused_when_prepared(pickled_model, tmp_path):
    with pytest.raises(UserError) as info:
        models.prepare(_spec(pickled_model), tmp_path / "out")
    assert _one_line_error(info).startswith("model.path: ")
    assert not (tmp_path / "out" / models.SOURCE_FILE).exists()


def test_validate_names_a_pickle_only_model(pickled_model, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"domain: knowledge\nmodel: {{source: local, path: {pickled_model}, chat_template: false}}\n")
    load_spec(spec)  # the schema is fine ...
    with pytest.raises(UserError) as info:
        load_spec(spec, check_paths=True)  # ... what it names is not: `seal-repro validate` says so
    assert _one_line_error(info).startswith(f"{spec}: model.path: {pickled_model} holds only pickle weights")


def test_a_safetensors_model_loads(tiny_model_dir):
    model, tok = models.load(_spec(tiny_model_dir), tiny_model_dir)
    assert model.config.hidden_size == 64 and tok.padding_side == "left"


@pytest.mark.parametrize("trust", [None, False, True])
def test_loading_asks_for_safetensors_and_trusts_code_only_when_the_spec_says(trust, tiny_model_dir, monkeypatch):
    import transformers

    calls = []

    class Stop(Exception):
        pass

    def fake(kind):
        def from_pretrained(ref, **kwargs):
            calls.append((kind, kwargs))
            if kind == "model":
                raise Stop
            return type("Tok", (), {"pad_token": "p"})()
        return from_pretrained

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake("tokenizer"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake("model"))
    spec = _spec(tiny_model_dir) if trust is None else _spec(tiny_model_dir, trust_remote_code=trust)
    with pytest.raises(Stop):
        models.load(spec, tiny_model_dir)
    expected = bool(trust)  # unset: off
    assert [kw["trust_remote_code"] for _, kw in calls] == [expected, expected]
    assert calls[1][1]["use_safetensors"] is True


def test_trust_remote_code_is_a_spec_field_off_by_default(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("domain: knowledge\nmodel: {chat_template: false}\n")
    assert load_spec(path).model.trust_remote_code is False
    path.write_text("domain: fewshot\nmodel: {chat_template: false, trust_remote_code: true}\n")
    assert load_spec(path).model.trust_remote_code is True
    path.write_text("domain: knowledge\nmodel: {chat_template: false, trust_remote_code: maybe}\n")
    with pytest.raises(UserError, match="model.trust_remote_code"):
        load_spec(path)


def _adapter(folder: Path, weights: str) -> Path:
    folder.mkdir()
    (folder / policy.ADAPTER_CONFIG).write_text(json.dumps({"r": 2, "lora_alpha": 4, "peft_type": "LORA"}))
    (folder / weights).write_bytes(b"\x80\x04not really a pickle")
    return folder


def test_a_pickle_adapter_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the base model should not load for an adapter that is refused")

    monkeypatch.setattr(models, "load", no_model)
    folder = _adapter(tmp_path / "policy", "adapter_model.bin")
    with pytest.raises(UserError) as info:
        policy.load_policy(None, tmp_path, folder)
    line = _one_line_error(info)
    assert "adapter_model.bin" in line and "safetensors only" in line
    with pytest.raises(UserError, match="is missing"):
        policy.load_policy(None, tmp_path, _adapter(tmp_path / "empty", "README.md"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = ast.unparse(f.value) if isinstance(f, ast.Attribute) else ""
            yield node, owner, name


def test_no_code_path_unpickles_weights_or_trusts_remote_code_on_its_own():
    """Statically, over the whole package: no torch.load / pickle.load; every from_pretrained call lives in
    models.py or policy.py (where the checks above apply); a model's weights are loaded with use_safetensors=True
    (or from the embedded GGUF file); trust_remote_code is only ever the spec's value."""
    sites = []
    for f in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node, owner, name in _calls(tree):
            where = f"{f.relative_to(PACKAGE)}:{node.lineno}"
            assert (owner, name) not in {("torch", "load"), ("pickle", "load"), ("pickle", "loads"),
                                          ("joblib", "load")}, where
            kw = {k.arg: k.value for k in node.keywords}
            if "weights_only" in kw:
                assert ast.unparse(kw["weights_only"]) != "False", where
            if "trust_remote_code" in kw:
                assert ast.unparse(kw["trust_remote_code"]) == "spec.trust_remote_code", where
            if name == "from_pretrained":
                sites.append(f.name)
                if owner == "AutoModelForCausalLM":
                    assert "gguf_file" in kw or ast.unparse(kw.get("use_safetensors", ast.Constant(None))) == "True", where
    assert set(sites) <= {"models.py", "policy.py"}


@pytest.fixture
def matmul_precision():
    """torch's process-wide float32 matmul precision, put back after the test."""
    import torch

    saved = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    yield torch.backends.cuda.matmul
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved


def test_tf32_is_switched_on_for_cuda_only(matmul_precision):
    assert models.enable_tf32("cpu") is False and matmul_precision.fp32_precision == "ieee"
    assert models.enable_tf32("cuda", enabled=False) is False and matmul_precision.fp32_precision == "ieee"
    assert models.enable_tf32("cuda") is True and matmul_precision.fp32_precision == "tf32"


@pytest.mark.parametrize("device, tf32, expected", [("cpu", True, "ieee"), ("cuda", True, "tf32"), ("cuda", False, "ieee")])
def test_loading_sets_tf32_where_the_model_goes_to_cuda(device, tf32, expected, tiny_model_dir, monkeypatch,
                                                        matmul_precision):
    import transformers

    class FakeModel:  # no GPU here: a model that "moves" to CUDA
        def to(self, where):
            self.device = where

        def eval(self):
            pass

    monkeypatch.setattr(models, "resolve_device", lambda requested: device)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda ref, **kw: FakeModel())
    model, _ = models.load(_spec(tiny_model_dir, tf32=tf32, lora_dtype="bfloat16"), tiny_model_dir)
    assert model.device == device and matmul_precision.fp32_precision == expected
    assert getattr(model, models.LORA_DTYPE_ATTR) == "bfloat16"  # the spec's LoRA dtype travels with the model
    assert ModelSpec(chat_template=False).tf32 is True
