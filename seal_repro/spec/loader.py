"""Read experiment specs from YAML: strict parsing, `include:` merging, relative paths, one line per error.

A spec file is a YAML mapping whose `domain:` picks its pydantic model in SPEC_MODELS. `include:` (a file
name or a list of them, relative to the including file) pulls in other documents first; the including
file's own keys win. Every problem is reported at once as `FILE: key.path: message`, where FILE is the
file that set that key, so a user can fix a whole spec in one pass.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from seal_repro.errors import SpecError
from seal_repro.spec.base import PathValue, SpecProblems
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.fewshot import FewShotSpec

# The model for each top-level `domain:` value; a new domain is one more entry here.
SPEC_MODELS: dict[str, type[BaseModel]] = {
    "knowledge": ExperimentSpec,
    "fewshot": FewShotSpec,
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _path_marker(annotation: Any, metadata: tuple = ()) -> PathValue | None:
    """The PathValue of `SpecPath` / `SpecPath | None` (in Annotated metadata, possibly inside a union)."""
    found = [m for m in metadata if isinstance(m, PathValue)]
    if found:
        return found[0]
    if get_origin(annotation) is Annotated:
        return _path_marker(get_args(annotation)[0], annotation.__metadata__)
    if get_origin(annotation) in (Union, types.UnionType):
        return next((m for a in get_args(annotation) if (m := _path_marker(a)) is not None), None)
    return None  # a list of paths would need rebasing per item; no spec has one


@dataclass(frozen=True)
class PathField:
    """A path field: its marker, and for a member of a union (e.g. one grader kind) the tag values its
    mapping must hold for the field to be that member's (`{"kind": "semantic"}`)."""

    marker: PathValue
    when: tuple[tuple[str, Any], ...] = ()

    def applies(self, parent: dict, value: str) -> bool:
        return all(parent.get(k) == v for k, v in self.when) and self.marker.applies_to(value)


def path_fields(model: type[BaseModel], prefix: str = "", _seen: tuple = (), _member: bool = False
                ) -> dict[str, list[PathField]]:
    """{dotted key: [PathField]} for every `SpecPath` field of `model`, through nested sections and union members."""
    if model in _seen:  # a model that contains itself would recurse forever
        return {}
    out: dict[str, list[PathField]] = {}
    when = tuple((name, args[0]) for name, f in model.model_fields.items()
                 if get_origin(f.annotation) is Literal and len(args := get_args(f.annotation)) == 1) if _member else ()
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        marker = _path_marker(info.annotation, tuple(info.metadata))
        if marker is not None:
            out.setdefault(dotted, []).append(PathField(marker, when))
        subs = _models_in(info.annotation)
        for sub in subs:
            for key, fields in path_fields(sub, dotted + ".", _seen + (model,), len(subs) > 1).items():
                out.setdefault(key, []).extend(f for f in fields if f not in out.get(key, []))
    return out


def domain_path_fields(domain: Any = None) -> dict[str, list[PathField]]:
    """The path fields of one domain's model; of every registered model when the domain is unknown."""
    return _path_fields_of(domain if isinstance(domain, str) and domain in SPEC_MODELS else None)


@functools.lru_cache(maxsize=None)  # the models never change at run time; every loaded file asks again
def _path_fields_of(domain: str | None) -> dict[str, list[PathField]]:
    models = [SPEC_MODELS[domain]] if domain is not None else list(SPEC_MODELS.values())
    out: dict[str, list[PathField]] = {}
    for m in models:
        for key, fields in path_fields(m).items():
            out.setdefault(key, []).extend(f for f in fields if f not in out.get(key, []))
    return out


# Dotted keys whose values are file paths, relative to the file that declared them (derived from the
# models' `SpecPath` fields, e.g. model.path, data.path, rl.train_data.path, tasks.train.ids_file).
PATH_KEYS: tuple[str, ...] = tuple(domain_path_fields())

# A spec has a few hundred values; far more means an alias bomb, which would hang the merge.
MAX_VALUES = 100_000

KeyPath = tuple  # str keys and int list indices, e.g. ("conditions", 2)

_TYPE_NAMES = {dict: "mapping", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}


class StrictYamlLoader(yaml.SafeLoader):
    """`yaml.safe_load` semantics; `parse_yaml_file` also rejects duplicate keys and unknown tags."""


# Plain data only: !!set and !!omap are safe but unordered or odd, and would make the spec hash unstable.
ALLOWED_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


def _kind(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_node(node: yaml.Node, path: KeyPath, problems: list[str], active: set[int], sizes: dict[int, int]) -> int:
    """Walk the composed tree before building it, so every duplicate key and bad tag is reported.

    Returns how many values the node expands to; `sizes` memoizes aliased nodes so an alias bomb
    is measured in linear time instead of being walked.
    """
    where = f"{format_key(path)}: " if path else ""
    line = node.start_mark.line + 1
    if id(node) in active:  # an alias to its own ancestor would make merging recurse forever
        problems.append(f"{where}recursive alias (line {line}); specs cannot refer to themselves")
        return 1
    if id(node) in sizes:
        return sizes[id(node)]
    if node.tag not in ALLOWED_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        problems.append(f"{where}tag {tag} is not allowed (line {line}); specs are plain YAML data")
        return 1
    active.add(id(node))
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key, key_line = key_node.value, key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(f"{where}a key must be a plain word, not a list or mapping (line {key_line})")
                continue
            if key_node.tag != "tag:yaml.org,2002:merge":  # `<<:` merging is meant to override
                _check_node(key_node, path, problems, active, sizes)
                ident = (key_node.tag, key)
                if ident in seen:
                    first = seen[ident]
                    lines = f"lines {first} and {key_line}" if first != key_line else f"twice on line {key_line}"
                    problems.append(f"{format_key(path + (key,))}: duplicate key ({lines})")
                seen.setdefault(ident, key_line)
            size += _check_node(value_node, path + (key,), problems, active, sizes)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            size += _check_node(child, path + (i,), problems, active, sizes)
    active.discard(id(node))
    sizes[id(node)] = size
    return size


def parse_yaml_file(path: Path, shown: str) -> tuple[dict | None, list[str]]:
    """(the file's top-level mapping, []) or (None, error lines)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [f"{shown}: file not found"]
    except IsADirectoryError:
        return None, [f"{shown}: is a folder, not a spec file"]
    except OSError as err:
        return None, [f"{shown}: cannot read ({err.strerror})"]
    if b"\x00" in raw:
        return None, [f"{shown}: binary file (contains NUL bytes), not YAML text"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, [f"{shown}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save it as UTF-8"]
    loader = StrictYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [f"{shown}: empty file; a spec is a mapping such as 'domain: knowledge'"]
        problems: list[str] = []
        size = _check_node(node, (), problems, set(), {})
        if size > MAX_VALUES:
            problems.append(f"expands to {size} values through aliases (limit {MAX_VALUES}); write it out plainly")
        if problems:
            return None, [f"{shown}: {p}" for p in problems]
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({err.context})" if err.context and err.problem else ""
        return None, [f"{shown}: YAML syntax error at {where}{err.problem or err.context}{context}"]
    except yaml.YAMLError as err:
        return None, [f"{shown}: YAML error: {' '.join(str(err).split())}"]
    except (ValueError, TypeError, OverflowError) as err:  # e.g. `!!int abc`
        return None, [f"{shown}: a value does not match its YAML tag ({err})"]
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        return None, [f"{shown}: the top level is a {_kind(data)}; a spec is a mapping of `key: value` lines"]
    return data, []


def _key_paths(doc: dict, at: KeyPath = ()) -> list[KeyPath]:
    out = []
    for key, value in doc.items():
        out.append(at + (key,))
        if isinstance(value, dict):
            out += _key_paths(value, at + (key,))
    return out


def _merge(base: dict, base_origins: dict, over: dict, over_origins: dict, at: KeyPath = ()) -> None:
    """Mappings merge recursively, anything else is replaced; origins follow the values."""
    for key, value in over.items():
        path = at + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], base_origins, value, over_origins, path)
        else:
            for old in [p for p in base_origins if p[: len(path)] == path]:
                del base_origins[old]
            base_origins.update({p: f for p, f in over_origins.items() if p[: len(path)] == path})
            base[key] = value
        base_origins[path] = over_origins[path]


@dataclass
class Resolved:
    """A spec document after includes: its data, which file set each key, and the problems found."""

    top: str
    section: str | None
    data: dict = field(default_factory=dict)
    origins: dict[KeyPath, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _cache: dict[Path, dict | None] = field(default_factory=dict, repr=False)

    def where(self, keys: KeyPath, missing: bool = False) -> str:
        """`FILE: key.path` for a key of the resolved document (the top file for a missing key)."""
        shown = self.top
        if not missing:
            for n in range(len(keys), 0, -1):
                if keys[:n] in self.origins:
                    shown = self.origins[keys[:n]]
                    break
        if shown == self.top and self.section is not None:
            keys = (self.section, *keys)
        return f"{shown}: {format_key(keys)}" if keys else shown

    def _read(self, path: Path) -> dict | None:
        real = path.resolve()
        if real not in self._cache:  # a diamond reads its shared file once
            data, errors = parse_yaml_file(path, str(path))
            self._cache[real] = data
            self.errors += errors
            if path.is_file():
                self.files.append(path)
        return copy.deepcopy(self._cache[real])

    def _error(self, shown: str, keys: KeyPath, message: str) -> None:
        self.errors.append(f"{shown}: {format_key(keys)}: {message}")

    def _include_names(self, value: Any, shown: str, at: KeyPath) -> list[str]:
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if names is None:
            self._error(shown, at, f"should be a file name or a list of them (got {_kind(value)})")
            return []
        for i, name in enumerate(names):
            if not (isinstance(name, str) and name):
                self._error(shown, at + (i,), f"should be a file name (got {name!r})")
        return [n for n in names if isinstance(n, str) and n]

    def resolve(self, path: Path, stack: tuple[tuple[Path, str], ...] = (), section: str | None = None):
        """(merged data, origins) of one file and everything it includes."""
        shown = str(path)
        doc = self._read(path)
        if doc is None:
            return {}, {}
        at: KeyPath = ()
        if section is not None:
            if section not in doc:
                self._error(shown, (section,), f"section not found (top-level keys: {', '.join(map(str, doc))})")
                return {}, {}
            doc, at = doc[section], (section,)
            if not isinstance(doc, dict):
                self._error(shown, at, f"should be a mapping (got {_kind(doc)})")
                return {}, {}
        stack = stack + ((path.resolve(), shown),)
        merged: dict = {}
        origins: dict[KeyPath, str] = {}
        includes = self._include_names(doc.pop("include"), shown, at + ("include",)) if "include" in doc else []
        for name in includes:
            target = Path(os.path.normpath(path.parent / os.path.expanduser(name)))
            ancestors = [real for real, _ in stack]
            if target.resolve() in ancestors:  # only ancestors: a diamond is fine
                chain = [s for _, s in stack[ancestors.index(target.resolve()) :]] + [str(target)]
                self._error(shown, at + ("include",), f"include cycle: {' -> '.join(chain)}")
                continue
            if not target.is_file():
                self._error(shown, at + ("include",), f"cannot include {name!r}: {target} is not a file")
                continue
            _merge(merged, origins, *self.resolve(target, stack))
        _merge(merged, origins, doc, {p: shown for p in _key_paths(doc)})
        return merged, origins


def _path_values(data: dict):
    """(keys, the mapping holding the last key, value) for each path key of the document's domain set to a
    non-empty string."""
    for dotted, fields in domain_path_fields(data.get("domain")).items():
        keys = tuple(dotted.split("."))
        parent: Any = data
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        value = parent.get(keys[-1]) if isinstance(parent, dict) else None
        if isinstance(value, str) and value and any(f.applies(parent, value) for f in fields):
            yield keys, parent, value


def _rebase_paths(res: Resolved) -> None:
    """Make each path value relative to the working directory instead of to the file that declared it."""
    for keys, parent, value in _path_values(res.data):
        value = os.path.expanduser(value)
        if not os.path.isabs(value):
            value = os.path.relpath(Path(res.origins[keys]).parent / value)
        parent[keys[-1]] = value


def resolve(path: str | os.PathLike, section: str | None = None) -> Resolved:
    """Read, include and merge a spec file; file-level problems raise SpecError."""
    res = Resolved(top=str(Path(path)), section=section)
    res.data, res.origins = res.resolve(Path(path), section=section)
    if res.errors:
        raise SpecError(list(dict.fromkeys(res.errors)))
    _rebase_paths(res)
    return res


def _tags(model: type[BaseModel]) -> list[str]:
    """Values of single-value Literal fields: how a discriminated union names its members."""
    literals = [get_args(f.annotation) for f in model.model_fields.values() if get_origin(f.annotation) is Literal]
    return [args[0] for args in literals if len(args) == 1]


def _walk(root: type[BaseModel], loc: tuple) -> tuple[KeyPath, list[type[BaseModel]]]:
    """(the document keys of a pydantic loc, the models that may sit there); drops union tags from loc."""
    keys: list = []
    models = [root]
    for part in loc:
        owners = [m for m in models if isinstance(part, str) and part in m.model_fields]
        if owners:
            models = [sub for m in owners for sub in _models_in(m.model_fields[part].annotation)]
        elif len(models) > 1 and any(part in _tags(m) for m in models):
            models = [m for m in models if part in _tags(m)]
            continue
        elif not isinstance(part, int):
            models = []
        keys.append(part)
    return tuple(keys), models


def _message(err: dict, root: type[BaseModel]) -> str:
    kind, ctx, given, loc = err["type"], err.get("ctx") or {}, err.get("input"), err["loc"]
    if kind == "extra_forbidden":
        parents = _walk(root, loc[:-1])[1]
        allowed = sorted({name for m in parents for name in m.model_fields})
        # A key one level too high (self_edit.temperature) is a likelier slip than a typo.
        nested = [f"{name}.{loc[-1]}" for m in parents for name, f in m.model_fields.items()
                  if any(loc[-1] in sub.model_fields for sub in _models_in(f.annotation))]
        guess = nested or difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return f"unknown key (allowed: {', '.join(allowed)})" + (f"; did you mean {guess[0]!r}?" if guess else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = ", ".join(sorted(t for m in _walk(root, loc)[1] for t in _tags(m)))
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        if kind == "union_tag_invalid":
            return f"unknown {disc} {ctx.get('tag')!r} (available: {tags})"
        return f"{disc} is not set (available: {tags})"
    if kind == "missing":
        return "required key is missing"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"should be a mapping (got {_kind(given)})"
    if kind in ("tuple_type", "list_type"):
        return f"should be a list (got {_kind(given)})"
    if kind == "invalid_key":  # YAML reads `on:`, `no:` and `1:` as non-strings
        return f"keys must be words, not {_kind(given)}; quote the key"
    if kind == "literal_error" or kind.endswith(("_type", "_parsing", "_from_float")):
        return f"{err['msg']} (got {given!r})"
    return err["msg"]


def load_spec(path: str | os.PathLike, section: str | None = None, *, check_paths: bool = False) -> BaseModel:
    """The validated spec in `path` (or under its top-level key `section`); raises SpecError."""
    res = resolve(path, section)
    domain = res.data.get("domain")
    model = SPEC_MODELS.get(domain) if isinstance(domain, str) else None
    if model is None:
        what = f"Unknown domain {domain!r}" if "domain" in res.data else "Missing required key 'domain'"
        where = res.where(("domain",), missing="domain" not in res.data)
        raise SpecError([f"{where}: {what}. Available: {', '.join(SPEC_MODELS)}"])
    lines: list[str] = []
    spec = None
    try:
        spec = model.model_validate(res.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if err["type"] == "invalid_key":  # the int is a mapping key here, not a list index
                loc = (*loc[:-1], str(loc[-1]))
            keys, _ = _walk(model, loc)
            several = (err.get("ctx") or {}).get("error")
            if isinstance(several, SpecProblems):  # one line per cross-field problem, at its own key
                for sub, message in several.problems:
                    at = keys + tuple(sub.split(".")) if sub else keys
                    lines.append(f"{res.where(at)}: {message}")
                continue
            lines.append(f"{res.where(keys, err['type'] == 'missing')}: {_message(err, model)}")
    for keys, _, value in _path_values(res.data) if check_paths else ():
        if not os.path.exists(value):
            lines.append(f"{res.where(keys)}: path does not exist: {value}")
    if lines:
        raise SpecError(list(dict.fromkeys(lines)))
    return spec


def resolve_spec_dict(path: str | os.PathLike, section: str | None = None) -> tuple[dict, list[Path]]:
    """The merged document after includes (paths rebased, not validated) and every file it read."""
    res = resolve(path, section)
    return res.data, res.files


# Sections that say how a run executes, never what it computes: left out of the hash (and so of every
# result that quotes it), so moving a run onto a Ray cluster does not make its results look like another spec's.
HASH_EXCLUDED: frozenset[str] = frozenset({"executor"})


def spec_hash(spec: BaseModel) -> str:
    """sha256 of the spec's canonical JSON: equal specs hash equal however their files were laid out."""
    data = {k: v for k, v in spec.model_dump(mode="json").items() if k not in HASH_EXCLUDED}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _BlockDumper(yaml.SafeDumper):
    pass


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line prompts read far better as `|` blocks than as one escaped line.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_BlockDumper.add_representer(str, _str_block)


def dump_spec_yaml(spec: BaseModel) -> str:
    """The fully resolved spec as YAML (field order as in the models); loads back to an equal spec."""
    return yaml.dump(spec.model_dump(mode="json"), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
