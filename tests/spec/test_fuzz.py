"""Property-based fuzzing of the spec loader: no traceback, no late crash.

Three sources of input, each run through `seal-repro validate` in-process (`seal_repro.cli.main`):

(a) random documents: nested mappings/lists/scalars dumped as YAML, spec-shaped documents (a real `domain:` and
    sections with random contents), YAML-ish text built from the syntax's sharp edges (anchors, aliases, merge keys,
    tags, directives, flow brackets, quotes, tabs), and raw bytes;
(b) random mutations of every valid spec under specs/ (each flattened through its includes, paths made absolute):
    a value replaced by another type, numbers out of range, required keys deleted, unknown keys added, values nested
    deeper, any field of the schema set to one of its choices or an edge value, paths pointed at missing files,
    folders, junk and pickle-only models, and `include:` pointed at missing, cyclic, folder and broken files.

The property: `validate` exits 0 or 2, never raises; on 2, stdout is empty and every stderr line is one
`FILE: message` line whose FILE is the spec asked about, or a file it includes named with it
(`inc.yaml (included by spec.yaml)`); on 0, nothing on stderr. And (c): a spec that validates also survives
what a run does before it loads a model — `plan_spec`, the resolved-spec round trip every stage reads
(`dump_spec_yaml` -> `load_resolved`), the data pre-flight (`knowledge.prepare.write_data` /
`fewshot.prepare.write_task_files` into a temporary folder: every data file read and checked) and the model
pre-flight (`models.prepare`, `models.resolve_device`) — raising nothing but a UserError.

Examples per test: the defaults below (1 030 in all, about a minute on one busy core);
SEAL_REPRO_FUZZ_EXAMPLES=N runs N per test instead.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seal_repro import cli, models
from seal_repro.commands.plan import plan_spec
from seal_repro.errors import UserError
from seal_repro.spec import SPEC_MODELS, dump_spec_yaml, load_spec, resolve_spec_dict, spec_hash
from seal_repro.spec.loader import _models_in, _path_values

REPO_SPECS = Path(__file__).resolve().parents[2] / "specs"
EXAMPLES = int(os.environ.get("SEAL_REPRO_FUZZ_EXAMPLES", "0"))


def fuzz(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------------------------------------ the property

LINE = re.compile(r"^(?P<file>[^:\n]+?)(?: \(included by [^:\n]+\))?: .+$")


def _valid_specs() -> dict[str, dict]:
    """{name: the merged document of each repo spec that validates, its paths absolute}."""
    out = {}
    for f in sorted(REPO_SPECS.rglob("*.y*ml")):
        try:
            load_spec(f)
            data, _ = resolve_spec_dict(f)
        except UserError:
            continue  # a spec another change left invalid is test_commands' business, not the fuzzer's
        for keys, parent, value in list(_path_values(data)):
            parent[keys[-1]] = os.path.abspath(value)
        out[str(f.relative_to(REPO_SPECS))] = data
    return out


VALID = _valid_specs()


def _preflight(spec, work: Path) -> None:
    """What a run does with a spec before it loads a model; only a UserError may come out."""
    for step in (
        lambda: plan_spec(spec),
        lambda: _round_trip(spec),
        lambda: _data(spec, work),
        lambda: models.prepare(spec.model, work / "model") if spec.model.source != "embedded"
        else models.embedded_gguf_path(),
        lambda: models.resolve_device(spec.model.device),
    ):
        try:
            step()
        except UserError as err:
            assert err.lines and all("\n" not in line for line in err.lines)


def _round_trip(spec) -> None:
    # resolve_spec writes this file and every stage validates it again (stages.helpers.load_resolved).
    again = SPEC_MODELS[spec.domain].model_validate(yaml.safe_load(dump_spec_yaml(spec)))
    assert again == spec and spec_hash(again) == spec_hash(spec)


def _data(spec, work: Path) -> None:
    if spec.domain == "knowledge":
        from seal_repro.knowledge.prepare import write_data

        write_data(spec, work / "data")
    else:
        from seal_repro.fewshot.prepare import write_task_files

        write_task_files(spec, work / "tasks")


def check(spec_file: Path, work: Path) -> int:
    """Run `seal-repro validate SPEC_FILE` in-process and assert the property; returns the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["validate", str(spec_file)])  # an exception here is the traceback a user would see
    out, err = out.getvalue(), err.getvalue()
    assert code in (0, 2), (code, err)
    lines = err.splitlines()
    if code == 0:
        assert lines == [] and out.startswith(f"ok  {spec_file}  (hash ")
        _preflight(load_spec(spec_file, check_paths=True), work)
    else:
        assert out == "" and lines, err
        for line in lines:
            m = LINE.match(line)
            assert m, line
            assert m["file"] == str(spec_file) or line.startswith(f"{m['file']} (included by "), line
            assert m["file"].startswith(str(work)), line  # a file of this example, never something else
    return code


# ------------------------------------------------------------------------------------------------ values

EDGE_NUMBERS = [-1, 0, 1, 2, 7, 8, 255, 256, 257, 400, 401, 900, 1000, 1001, 4096, 4097, 8192, 8193, 10_000, 10_001,
                100_000, 131_072, 131_073, 2**31, 2**32 - 1, 2**32, 2**63, 2**64, 10**13, 10**100, 10**4000,
                -(10**30), 0.0, -0.0, 0.5, 1.0, 1.5, 1e-300, 5e-324, 1e308, float("inf"), float("-inf"), float("nan")]
EDGE_STRINGS = ["", " ", "auto", "none", "cpu", "cuda", "local", "hf", "embedded", "fictional", "seal_json",
                "squad_json", "hf_squad", "semantic", "judge", "f1", "ray", "top_m", "custom", "{question}",
                "{passage}", "{demonstrations}", "{question} {x}", "{", "}", "{0}", "a\nb", "\t", "\x00", "\ud800",
                "~", ".", "./x", "../x", "/", "/dev/null", "yes", "null", ".inf", "0x10", "1e-3", "2024-01-01",
                "6150a2bd", "358ba94e", "q_proj", "x" * 300, "é", "🙂"]
KEYS = sorted({name for m in SPEC_MODELS.values() for name in m.model_fields} | {"include", "kind", "lora", "rank",
                                                                                 "alpha", "path", "<<", "bogus"})
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(EDGE_NUMBERS), st.sampled_from(EDGE_STRINGS))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------------------------------ (a) random input

YAML_BITS = ["domain: knowledge\n", "domain: fewshot\n", "model: {chat_template: false}\n", "model:\n", "  ", "- ",
             ": ", "\n", "&a ", "*a", "*b", "&b ", "<<: ", "<<: *a\n", "!!python/object/apply:os.system ['true']",
             "!!binary aGk=", "!!int ", "!!float ", "!!str ", "!!set ", "!!omap ", "!custom ", "? ", "{", "}", "[",
             "]", ",", "'", '"', "\\u12", "|\n", ">-\n", "#", "\t", "%YAML 1.1\n", "%TAG ! x\n", "---\n", "...\n",
             "include: ", "inner_loop: {lora: {rank: ", "1", "0", "-1", "1e999", "99999999999999999999999", ".nan",
             "~", "yes", "2001-01-01", "x", "include: [a, b]\n", "include: spec.yaml\n", "\ufeff", "\x85", "\u2028"]


def _run(work: Path, content: str | bytes, record: bool = True) -> int:
    spec = work / "spec.yaml"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    code = check(spec, work)
    if record:  # --hypothesis-show-statistics: how many examples reached the pre-flight
        event(f"validate exit {code}")
    return code


@fuzz(200)
@given(doc=values)
def test_random_documents(doc):
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), _dump(doc))


@fuzz(200)
@given(domain=st.sampled_from(["knowledge", "fewshot", "other", 3]),
       sections=st.dictionaries(st.sampled_from(KEYS), values, max_size=5),
       model=st.dictionaries(st.sampled_from(sorted(SPEC_MODELS["knowledge"].model_fields["model"].annotation
                                                    .model_fields)), scalars, max_size=4))
def test_spec_shaped_documents(domain, sections, model):
    doc = {"domain": domain, "model": {"chat_template": False, **model}, **sections}
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), _dump(doc))


@fuzz(200)
@given(bits=st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=4), max_size=25))
def test_yaml_ish_text(bits):
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), "".join(bits))


@fuzz(60)
@given(raw=st.binary(max_size=200))
def test_raw_bytes(raw):
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), raw)


# ------------------------------------------------------------------------------------------------ (b) mutations


def _field_choices(annotation) -> list:
    """The values a field's type names (Literal members, True/False, None), for `set_field` mutations."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if annotation is bool:
        return [True, False]
    if get_origin(annotation) is Annotated:
        return _field_choices(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [c for a in get_args(annotation) for c in ([None] if a is type(None) else _field_choices(a))]
    return []


def _bounds(annotation, metadata=()) -> list:
    """A numeric field's own bounds and the values just inside them (ge/le, gt/lt +- 1 or a hair), for
    mutations that stay valid: the largest value validate accepts must be one the stages can use."""
    out = []
    for m in list(metadata) + [a for a in (get_args(annotation) if get_origin(annotation) is Annotated else ())]:
        for attr, step in (("ge", 0), ("le", 0), ("gt", 1), ("lt", -1)):
            v = getattr(m, attr, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool):  # the next int, or the next float-ish
                out += [v + step, v + step * 1e-9 * max(1.0, abs(v))] if step else [v]
    if get_origin(annotation) in (Union, types.UnionType):
        out += [b for a in get_args(annotation) for b in _bounds(a)]
    return out


def _schema(model, prefix: tuple = (), seen: tuple = ()) -> dict[tuple, list]:
    """{key path: choices} of every field reachable from `model` (every union member's too): its type's choices
    and its numeric bounds."""
    if model in seen:
        return {}
    out: dict[tuple, list] = {}
    for name, info in model.model_fields.items():
        path = prefix + (name,)
        out.setdefault(path, []).extend(_field_choices(info.annotation) + _bounds(info.annotation, info.metadata))
        for sub in _models_in(info.annotation):
            for p, c in _schema(sub, path, seen + (model,)).items():
                out.setdefault(p, []).extend(c)
    return out


SCHEMA = {d: sorted(_schema(m).items(), key=lambda kv: kv[0]) for d, m in SPEC_MODELS.items()}


def _nodes(doc, at: tuple = ()):
    """Every (key path, value) of a document, the root included."""
    yield at, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, at + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, at + (i,))


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _set(doc, path, value):
    for k in path[:-1]:
        if not isinstance(doc.get(k), dict):
            doc[k] = {}
        doc = doc[k]
    doc[path[-1]] = value


def _files(work: Path) -> dict[str, str]:
    """Things a path field or an include may point at, made fresh for each example."""
    (work / "folder").mkdir()
    (work / "junk.json").write_text('{"not": ["what", "any", "loader", "wants"]}')
    (work / "ids.json").write_text(json.dumps({"train": ["6150a2bd", "44f52bb0"], "eval": ["358ba94e", "66e6c45b"]}))
    pickled = work / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    return {"missing": str(work / "missing.json"), "folder": str(work / "folder"), "junk": str(work / "junk.json"),
            "ids": str(work / "ids.json"), "pickled": str(pickled), "relative": "./junk.json", "root": "/"}


MUTATIONS = ["retype", "number", "delete", "unknown", "deeper", "set_field", "set_field", "path", "include"]


def _mutate(doc: dict, data, files: dict[str, str], work: Path) -> None:
    op = data.draw(st.sampled_from(MUTATIONS), label="op")
    nodes = list(_nodes(doc))
    path, node = data.draw(st.sampled_from(nodes), label="at")
    if op == "retype" and path:
        _set_at(doc, path, data.draw(values, label="value"))
    elif op == "number" and path:
        _set_at(doc, path, data.draw(st.sampled_from(EDGE_NUMBERS) | st.integers() | st.floats(), label="number"))
    elif op == "delete" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
    elif op == "unknown" and isinstance(node, dict):
        near = [k[:-1] + "s" for k in node if isinstance(k, str) and k]  # a near miss of a real key
        node[data.draw(st.sampled_from(KEYS + near) | keys, label="key")] = data.draw(values, label="value")
    elif op == "deeper" and path:
        wrap = data.draw(st.sampled_from(["dict", "list", "self"]), label="wrap")
        _set_at(doc, path, {"x": node} if wrap == "dict" else [node] if wrap == "list" else {path[-1]: node})
    elif op in ("set_field", "path"):
        domain = doc["domain"] if isinstance(doc.get("domain"), str) and doc["domain"] in SCHEMA else "knowledge"
        fields = [(p, c) for p, c in SCHEMA[domain] if op == "set_field" or p[-1] in ("path", "teacher_path",
                                                                                    "ids_file", "model")]
        key, choices = data.draw(st.sampled_from(fields), label="field")
        options = choices + EDGE_NUMBERS[:30] + list(files.values())
        _set(doc, key, data.draw(st.sampled_from(options) | values if op == "set_field"
                                 else st.sampled_from(list(files.values())), label="field value"))
    elif op == "include":
        (work / "cycle.yaml").write_text("include: spec.yaml\n")
        fragment = {}
        _mutate_fragment(fragment, data)
        (work / "fragment.yaml").write_text(_dump(fragment))
        names = st.sampled_from(["missing.yaml", "spec.yaml", "cycle.yaml", "fragment.yaml", "folder", "/",
                                 "junk.json", "~/nowhere.yaml", "x" * 300])
        doc["include"] = data.draw(names | st.lists(names, max_size=3) | values, label="include")


def _mutate_fragment(fragment: dict, data) -> None:
    """An included file: one field of the schema with a random value (often invalid), maybe more."""
    for _ in range(data.draw(st.integers(1, 3), label="fragment size")):
        key, choices = data.draw(st.sampled_from(SCHEMA["knowledge"]), label="fragment field")
        _set(fragment, key, data.draw(st.sampled_from(choices + EDGE_NUMBERS) | values, label="fragment value"))


def _set_at(doc, path, value):
    _get(doc, path[:-1])[path[-1]] = value


@fuzz(250)
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_mutated_repo_specs(name, data):
    import copy

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = _files(work)
        doc = copy.deepcopy(VALID[name])
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            _mutate(doc, data, files, work)
        _run(work, _dump(doc))


@fuzz(120)
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_repo_specs_with_fields_at_their_choices_and_bounds(name, data):
    """Mutations that mostly stay valid, so most examples reach the pre-flight: fields set to one of their choices
    (a Literal's members, booleans, null) or to the edge of their own bounds (`le`, `ge`, ...)."""
    import copy

    doc = copy.deepcopy(VALID[name])
    fields = [(p, c) for p, c in SCHEMA[doc["domain"]] if c]
    for _ in range(data.draw(st.integers(1, 4), label="fields")):
        key, choices = data.draw(st.sampled_from(fields), label="field")
        _set(doc, key, data.draw(st.sampled_from(choices), label="value"))
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp), _dump(doc))


def test_every_valid_repo_spec_passes_the_preflight(tmp_path):
    """(c) on the unmutated specs too: each validates from a temporary copy and survives the pre-flight."""
    assert len(VALID) >= 8, sorted(VALID)  # the fuzzer mutates them all; a vanished spec would shrink it silently
    for i, name in enumerate(sorted(VALID)):
        work = tmp_path / str(i)
        work.mkdir()
        if _run(work, _dump(VALID[name]), record=False) != 0:
            pytest.skip(f"{name}: its data is not on this machine (../shared)")
