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
import importlib.util
import os
import re
import stat
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

# Limits on what a spec file may be. A real spec is a few KB, nests about five levels and has a few hundred values;
# anything far beyond is an accident or an attack (a billion-laughs alias bomb, a deeply nested document that would
# exhaust Python's recursion, an include lattice that merges the same files exponentially often), refused with
# one line instead of a hang or a traceback.
MAX_BYTES = 1 << 20  # per file
MAX_DEPTH = 32  # nesting of mappings and lists, aliases expanded
MAX_VALUES = 100_000  # values per file, aliases expanded
MAX_INCLUDES = 64  # `include:` entries followed while resolving one spec (a diamond counts each path)
MAX_ERROR_LINES = 50  # problems listed per spec; the rest are counted

KeyPath = tuple  # str keys and int list indices, e.g. ("conditions", 2)

_TYPE_NAMES = {dict: "mapping", list: "list", str: "string", int: "integer", float: "number", bool: "boolean"}


class TooDeep(yaml.MarkedYAMLError):
    """A document nested deeper than MAX_DEPTH (PyYAML's composer recurses once per level)."""


class StrictYamlLoader(yaml.SafeLoader):
    """`yaml.safe_load` semantics; `parse_yaml_file` also rejects duplicate keys, unknown tags, non-string keys, and
    documents nested deeper than MAX_DEPTH (refused while composing, before Python's recursion limit is reached)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self._depth >= MAX_DEPTH:
            raise TooDeep(problem=f"nested more than {MAX_DEPTH} levels deep; a spec nests a few",
                          problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Plain data only: !!set and !!omap are safe but unordered or odd, and would make the spec hash unstable.
ALLOWED_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


def _kind(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _show_key(part: Any) -> str:
    text = str(part)
    # A key quoted with a newline or another control character would break the one-line error format.
    return text if text.isprintable() and len(text) <= 80 else repr(text[:80] + ("…" if len(text) > 80 else ""))


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else (
            f".{_show_key(part)}" if out else _show_key(part))
    return out


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped: an error is one line, whatever a value holds."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def short(value: Any, limit: int = 60) -> str:
    """repr of a user's value, cut to `limit` characters (a 4000-digit integer or a whole prompt is not a message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_KEY_KINDS = {"int": "integer", "float": "number", "bool": "boolean", "null": "null", "timestamp": "date"}


def _check_node(node: yaml.Node, path: KeyPath, problems: list[str], active: set[int],
                memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Walk the composed tree before building it, so every duplicate key, bad tag and non-string key is reported.

    Returns (how many values the node expands to, how deep it nests); `memo` keeps both for every node walked, so
    an alias bomb is measured in linear time instead of being walked, and an alias cannot hide depth: a document
    nests as deep as its aliases expand, and everything after the loader (merging, validation) recurses that deep.
    """
    where = f"{format_key(path)}: " if path else ""
    line = node.start_mark.line + 1
    if id(node) in active:  # an alias to its own ancestor would make merging recurse forever
        problems.append(f"{where}recursive alias (line {line}); specs cannot refer to themselves")
        return 1, 1
    if id(node) not in memo:
        memo[id(node)] = _walk_node(node, path, problems, active, memo, where, line)
    size, height = memo[id(node)]
    if len(active) + height > MAX_DEPTH and not any("levels deep" in p for p in problems):
        problems.append(f"{where}nested more than {MAX_DEPTH} levels deep through aliases (line {line}); "
                        "a spec nests a few")
    return size, height


def _walk_node(node: yaml.Node, path: KeyPath, problems: list[str], active: set[int],
               memo: dict[int, tuple[int, int]], where: str, line: int) -> tuple[int, int]:
    if node.tag not in ALLOWED_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        problems.append(f"{where}tag {one_line(tag)} is not allowed (line {line}); specs are plain YAML data")
        return 1, 1
    if len(active) >= MAX_DEPTH:  # the children would be deeper still; one line says so
        return 1, MAX_DEPTH + 1
    active.add(id(node))
    size, height = 1, 0
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key, key_line = key_node.value, key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(f"{where}a key must be a plain word, not a list or mapping (line {key_line})")
                continue
            kind = _KEY_KINDS.get(key_node.tag.removeprefix("tag:yaml.org,2002:"))
            if kind is not None:  # YAML reads `1:`, `yes:`, `~:` and `2024-01-01:` as non-strings
                problems.append(f"{format_key(path + (key,))}: keys must be words, not {kind}; quote the key "
                                f"(line {key_line})")
            elif key_node.tag != "tag:yaml.org,2002:merge":  # `<<:` merging is meant to override
                _check_node(key_node, path, problems, active, memo)
                ident = (key_node.tag, key)
                if ident in seen:
                    first = seen[ident]
                    lines = f"lines {first} and {key_line}" if first != key_line else f"twice on line {key_line}"
                    problems.append(f"{format_key(path + (key,))}: duplicate key ({lines})")
                seen.setdefault(ident, key_line)
            n, h = _check_node(value_node, path + (key,), problems, active, memo)
            size, height = size + n, max(height, h)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            n, h = _check_node(child, path + (i,), problems, active, memo)
            size, height = size + n, max(height, h)
    active.discard(id(node))
    return size, height + 1


def _bad_strings(value: Any, path: KeyPath, problems: list[str], seen: set[int]) -> None:
    """A line for every string (key or value) that no stage could use: a NUL character (a path with one cannot
    be opened) or a lone surrogate (`"\\ud800"`: not Unicode, so neither hashable as UTF-8 nor writable)."""
    if id(value) in seen:  # an aliased value is checked once
        return
    if isinstance(value, str):
        why = "a NUL character" if "\x00" in value else None
        if why is None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                why = f"a lone surrogate {value[err.start]!r}, which is not Unicode"
        if why:
            problems.append(f"{format_key(path) or 'a key'}: contains {why}")
        return
    if isinstance(value, (dict, list)):
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(key, str):
                _bad_strings(key, path, problems, seen)
            _bad_strings(child, path + (key,), problems, seen)


def _read_bytes(path: Path, shown: str) -> tuple[bytes | None, list[str]]:
    """The file's bytes, or why not: missing, a folder, not a regular file (a FIFO would block), too big."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            return None, [f"{shown}: is a folder, not a spec file"]
        if not stat.S_ISREG(st.st_mode):
            return None, [f"{shown}: not a regular file"]
        if st.st_size > MAX_BYTES:
            return None, [f"{shown}: {st.st_size} bytes, more than a spec can be ({MAX_BYTES}); specs are a few KB"]
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None, [f"{shown}: file not found"]
    except (OSError, ValueError) as err:  # permissions, a name too long, a NUL in the name
        return None, [f"{shown}: cannot read ({getattr(err, 'strerror', None) or err})"]
    if len(raw) > MAX_BYTES:
        return None, [f"{shown}: more than {MAX_BYTES} bytes, more than a spec can be; specs are a few KB"]
    return raw, []


def parse_yaml_file(path: Path, shown: str) -> tuple[dict | None, list[str]]:
    """(the file's top-level mapping, []) or (None, error lines): never an exception, whatever the bytes."""
    raw, errors = _read_bytes(path, shown)
    if raw is None:
        return None, errors
    if b"\x00" in raw:
        return None, [f"{shown}: binary file (contains NUL bytes), not YAML text"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, [f"{shown}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save it as UTF-8"]
    loader = None
    try:
        loader = StrictYamlLoader(text)  # reads the text's first characters: may raise a ReaderError
        node = loader.get_single_node()
        if node is None:
            return None, [f"{shown}: empty file; a spec is a mapping such as 'domain: knowledge'"]
        problems: list[str] = []
        size, _ = _check_node(node, (), problems, set(), {})
        if size > MAX_VALUES:
            problems.append(f"expands to {size} values through aliases (limit {MAX_VALUES}); write it out plainly")
        if not problems:
            data = loader.construct_document(node)
            _bad_strings(data, (), problems, set())
        if problems:
            return None, [one_line(f"{shown}: {p}") for p in dict.fromkeys(problems)]
    except yaml.reader.ReaderError as err:  # a control character: YAML allows none but tab and line breaks
        line = text.count("\n", 0, err.position) + 1
        return None, [f"{shown}: line {line}: character {err.character:#06x} is not allowed in YAML (a control "
                      "character); remove it or write it as an escape inside double quotes"]
    except TooDeep as err:
        return None, [f"{shown}: line {err.problem_mark.line + 1}: {err.problem}"]
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({err.context})" if err.context and err.problem else ""
        return None, [one_line(f"{shown}: YAML syntax error at {where}{err.problem or err.context}{context}")]
    except yaml.YAMLError as err:
        return None, [one_line(f"{shown}: YAML error: {' '.join(str(err).split())}")]
    # PyYAML's constructors fail on a value their explicit tag cannot read in several ways: `!!int abc`
    # (ValueError), `!!int ''` (IndexError), `!!bool maybe` (KeyError), `!!timestamp x` (AttributeError), and an
    # integer of 5000 digits (ValueError).
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError) as err:
        why = short(str(err) or type(err).__name__, 160)
        return None, [one_line(f"{shown}: a value does not match its YAML tag ({why})")]
    except RecursionError:  # a safety net: MAX_DEPTH keeps every walk above far from the limit
        return None, [f"{shown}: nested too deeply to read; a spec nests a few levels"]
    finally:
        if loader is not None:
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
    """Mappings merge recursively, anything else is replaced; origins follow the values. Linear in the size of
    `over` (a spec may hold up to MAX_VALUES values: a quadratic merge would hang on a big one)."""
    for key, value in over.items():
        path = at + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], base_origins, value, over_origins, path)
        else:
            if isinstance(base.get(key), dict):  # the replaced mapping's keys no longer come from anywhere
                for old in _key_paths(base[key], path):
                    base_origins.pop(old, None)
            if isinstance(value, dict):
                base_origins.update({p: over_origins[p] for p in _key_paths(value, path) if p in over_origins})
            base[key] = value
        base_origins[path] = over_origins[path]


def _probe(target: Path) -> tuple[Path | None, str | None]:
    """(the resolved path, None) of a file an `include:` names, or (None, why it cannot be included)."""
    try:
        real = target.resolve()
        if not target.is_file():
            return None, f"{target} is not a file"
    except (OSError, ValueError, RuntimeError) as err:  # a name too long, a symlink loop
        return None, f"{getattr(err, 'strerror', None) or err}"
    return real, None


@dataclass
class Resolved:
    """A spec document after includes: its data, which file set each key, and the problems found.

    Errors name the file that set the key; a file reached through `include:` is shown with the file that
    included it and the spec that was asked for, `lib/lora.yaml (included by base.yaml, from top.yaml)`, so a
    user validating top.yaml learns both where to fix it and why top.yaml fails.
    """

    top: str
    section: str | None
    data: dict = field(default_factory=dict)
    origins: dict[KeyPath, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # a file as read -> as shown in errors
    includes: int = 0  # `include:` entries followed so far
    _cache: dict[Path, dict | None] = field(default_factory=dict, repr=False)

    def label(self, shown: str) -> str:
        return self.labels.get(shown, shown)

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
        return f"{self.label(shown)}: {format_key(keys)}" if keys else self.label(shown)

    def _read(self, path: Path, real: Path) -> dict | None:
        if real not in self._cache:  # a diamond reads its shared file once
            data, errors = parse_yaml_file(path, self.label(str(path)))
            self._cache[real] = data
            self.errors += errors
            if data is not None:
                self.files.append(path)
        return copy.deepcopy(self._cache[real])

    def _error(self, shown: str, keys: KeyPath, message: str) -> None:
        self.errors.append(one_line(f"{self.label(shown)}: {format_key(keys)}: {message}"))

    def _include_names(self, value: Any, shown: str, at: KeyPath) -> list[str]:
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if names is None:
            self._error(shown, at, f"should be a file name or a list of them (got {_kind(value)})")
            return []
        for i, name in enumerate(names):
            if not (isinstance(name, str) and name):
                self._error(shown, at + (i,), f"should be a file name (got {short(name)})")
        return [n for n in names if isinstance(n, str) and n]

    def resolve(self, path: Path, stack: tuple[tuple[Path, str], ...] = (), section: str | None = None,
                real: Path | None = None):
        """(merged data, origins) of one file and everything it includes."""
        shown = str(path)
        if stack:
            via = f", from {stack[0][1]}" if len(stack) > 1 else ""
            self.labels.setdefault(shown, f"{shown} (included by {stack[-1][1]}{via})")
        if real is None:
            try:
                real = path.resolve()
            except (OSError, ValueError, RuntimeError):
                real = path  # parse_yaml_file says why it cannot be read
        doc = self._read(path, real)
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
        stack = stack + ((real, shown),)
        merged: dict = {}
        origins: dict[KeyPath, str] = {}
        includes = self._include_names(doc.pop("include"), shown, at + ("include",)) if "include" in doc else []
        for name in includes:
            self.includes += 1
            if self.includes > MAX_INCLUDES:  # said once, where it happened; the rest of the lattice is not read
                if self.includes == MAX_INCLUDES + 1:
                    self._error(shown, at + ("include",), f"more than {MAX_INCLUDES} includes in all (counting "
                                "every path to a file included twice); a spec includes a few")
                break
            target = Path(os.path.normpath(path.parent / os.path.expanduser(name)))
            target_real, why = _probe(target)
            if why is not None:
                self._error(shown, at + ("include",), f"cannot include {short(name)}: {why}")
                continue
            ancestors = [r for r, _ in stack]
            if target_real in ancestors:  # only ancestors: a diamond is fine
                chain = [s for _, s in stack[ancestors.index(target_real):]] + [str(target)]
                self._error(shown, at + ("include",), f"include cycle: {' -> '.join(chain)}")
                continue
            _merge(merged, origins, *self.resolve(target, stack, real=target_real))
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
    try:
        res.data, res.origins = res.resolve(Path(path), section=section)
    except RecursionError:  # a safety net: MAX_DEPTH and MAX_INCLUDES keep every walk far from the limit
        res.errors.append(f"{res.top}: nested too deeply to read; a spec nests a few levels")
    if res.errors:
        raise SpecError(_capped(res.top, res.errors))
    _rebase_paths(res)
    return res


def _capped(top: str, lines: list[str], more: int = 0) -> list[str]:
    """Distinct lines, each one line, at most MAX_ERROR_LINES of them, then how many more there are."""
    lines = [one_line(line) for line in dict.fromkeys(lines)]
    more += max(0, len(lines) - MAX_ERROR_LINES)
    return lines[:MAX_ERROR_LINES] + ([f"{top}: … and {more} more problems"] if more else [])


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
        guess = nested or difflib.get_close_matches(str(loc[-1])[:80], allowed, n=1)
        return f"unknown key (allowed: {', '.join(allowed)})" + (f"; did you mean {guess[0]!r}?" if guess else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = ", ".join(sorted(t for m in _walk(root, loc)[1] for t in _tags(m)))
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        if kind == "union_tag_invalid":
            return f"unknown {disc} {short(ctx.get('tag'))} (available: {tags})"
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
        return f"{err['msg']} (got {short(given)})"
    return err["msg"]


# Weight files that are Python pickles: loading one can run arbitrary code, so no model or adapter is read from them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def model_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a model folder this toolkit loads (config.json and safetensors weights), or None."""
    p = Path(folder)
    if not p.is_dir():
        return f"{folder} is not a folder (a model folder holds config.json and *.safetensors weights)"
    if not (p / "config.json").is_file():
        return f"no config.json in {folder} (a model folder holds config.json and *.safetensors weights)"
    names = sorted(f.name for f in p.iterdir())
    if any(n.endswith(".safetensors") for n in names):
        return None
    pickled = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if pickled:
        return (f"{folder} holds only pickle weights ({', '.join(pickled[:3])}), which are never loaded (unpickling "
                "can run code): save the model with safetensors (save_pretrained(..., safe_serialization=True))")
    return f"no *.safetensors weights in {folder}"


_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def _input_problems(res: Resolved, spec: BaseModel | None) -> list[str]:
    """What a run needs from the file system, checked now: every path a spec names exists and is what its key
    reads (a model folder with config.json and safetensors weights, a data file, a folder), and the semantic
    grader's model package is installed. One `FILE: key.path: message` line each."""
    lines = []
    for keys, parent, value in _path_values(res.data):
        where = res.where(keys)
        try:
            exists = os.path.exists(value)
        except (OSError, ValueError):
            exists = False
        if not exists:
            lines.append(f"{where}: path does not exist: {value}")
            continue
        name = keys[-1]
        if keys[-2:] in (("model", "path"), ("writer", "path")) and parent.get("source") == "local":
            problem = model_folder_problem(value)
        elif name in ("teacher_path", "ids_file") or (name == "path" and parent.get("kind") in ("seal_json",
                                                                                                  "squad_json")):
            problem = None if os.path.isfile(value) else f"{value} is a folder; this key names a file"
        elif keys[-2:] == ("grader", "model"):  # a sentence-transformers folder: read from safetensors only too
            problem = model_folder_problem(value)
        else:
            problem = None
        if problem:
            lines.append(f"{where}: {problem}")
    grader = getattr(getattr(spec, "evaluation", None), "grader", None)
    if getattr(grader, "kind", None) == "semantic" and not any(k[-2:] == ("grader", "model")
                                                               for k, _, _ in _path_values(res.data)):
        module = grader.model.replace("-", "_")
        try:
            found = _PACKAGE.match(grader.model) is not None and importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            lines.append(f"{res.where(('evaluation', 'grader', 'model'))}: {short(grader.model)} is neither an "
                         "installed package that ships a sentence-transformers model nor a folder (write a folder "
                         "as ./name)")
    return lines


def load_spec(path: str | os.PathLike, section: str | None = None, *, check_paths: bool = False) -> BaseModel:
    """The validated spec in `path` (or under its top-level key `section`); raises SpecError.

    `check_paths`: also check what a run will need from the file system (`_input_problems`): every path exists
    and is what its key reads."""
    res = resolve(path, section)
    domain = res.data.get("domain")
    model = SPEC_MODELS.get(domain) if isinstance(domain, str) else None
    if model is None:
        what = f"Unknown domain {short(domain)}" if "domain" in res.data else "Missing required key 'domain'"
        where = res.where(("domain",), missing="domain" not in res.data)
        raise SpecError([one_line(f"{where}: {what}. Available: {', '.join(SPEC_MODELS)}")])
    lines: list[str] = []
    spec = None
    more = 0  # problems not described
    try:
        spec = model.model_validate(res.data)
    except ValidationError as exc:
        errors = exc.errors()
        for i, err in enumerate(errors):
            if len(lines) >= MAX_ERROR_LINES:  # a list of 100 000 bad values: the rest are counted, not described
                more = len(errors) - i
                break
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
    except RecursionError:  # a safety net: the loader's limits keep documents far shallower
        lines.append(f"{res.top}: nested too deeply to validate; a spec nests a few levels")
    if check_paths:
        lines += _input_problems(res, spec)
    if lines:
        raise SpecError(_capped(res.top, lines, more))
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
    # An absent self-edit writer (the paper's setting) leaves the hash what it was before the key existed, so
    # every earlier spec keeps its hash (run folders, provenance); a writer, when set, is hashed like any key.
    if isinstance(data.get("self_edit"), dict) and data["self_edit"].get("writer", 0) is None:
        data["self_edit"] = {k: v for k, v in data["self_edit"].items() if k != "writer"}
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
