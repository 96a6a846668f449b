"""Load and validate the mappings directory: every problem of every file, with file:line.

    mappings = load_mappings("mappings")      # raises MappingError listing every problem
    mappings.aggregates                        # [AggregateMapping, ...] in file-name order
    mappings.by_table["shop.orders"]           # [(AggregateMapping, TableMapping, "root" | child name), ...]
    mappings.tables_and_columns()              # what the source must decode
    commands, dead = mappings.translate(txn)   # see mapping/translate.py

Validation happens in three passes, and all problems of all passes and files are
collected before MappingError is raised:
  1. YAML syntax (with the line the parser stopped at) and duplicate keys;
  2. the format (pydantic models of mapping/schema.py), each error turned into
     "file:line: key.path: message — allowed: ..." with the line of the offending key;
  3. rules spanning keys and files: transition/enrich fields, parent_key arity,
     child names, command name clashes, decider importability, a table mapped twice,
     aggregate name and topic clashes.

The YAML dialect is YAML 1.2-like on purpose, because these files are edited by hand:
only true/false are booleans (yes/no/on/off stay strings), dates stay strings (they
are compared with the source's normalized strings), numbers with leading zeros stay
strings (no octal), and every mapping key is read as a string.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal

import pydantic
import yaml
from pydantic import BaseModel

from cdc_bridge.mapping import schema as _schema
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.errors import MappingError, MappingProblem
from cdc_bridge.mapping.schema import AggregateMapping, TableMapping
from cdc_bridge.source.transaction import SourceTransaction

Loc = tuple[Any, ...]
"""A key path inside one file: str keys and int list indices, e.g. ("children", 0, "enrich", 1)."""

_MODEL_NAMES = {name for name, obj in vars(_schema).items()
                if inspect.isclass(obj) and issubclass(obj, BaseModel)}

__all__ = ["MappingSet", "load_mappings", "MappingError", "MappingProblem", "key_path"]


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like scalars and string keys (see the module docstring)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:  # type: ignore[override]
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark)
        self.flatten_mapping(node)  # `<<: *anchor` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = key_node.value
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "a key must be a plain name, not a list or mapping", key_node.start_mark)
            out[key] = self.construct_object(value_node, deep=deep)
        return out


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int], list[MappingProblem]]:
    """(data, line of every key path, problems). data is None when the file cannot be used."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, [MappingProblem(file, 1, "", "the file is empty; it must describe one aggregate "
                                             "(keys aggregate, root, children ...)")]
        problems = _duplicate_keys(node, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (e.context, e.problem) if x) or str(e)
        return None, {}, [MappingProblem(file, line, "", f"YAML syntax error: {what}{_yaml_hint(e, text)}")]
    except yaml.YAMLError as e:
        return None, {}, [MappingProblem(file, None, "", f"YAML syntax error: {e}")]
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {(): 1}
    _record_lines(node, (), lines)
    return data, lines, problems


def _yaml_hint(e: yaml.MarkedYAMLError, text: str) -> str:
    """What a person usually did wrong, for the errors PyYAML words for parser writers."""
    problem = e.problem or ""
    if "'\\t'" in problem or "\t" in problem:
        return " — indent with spaces, not tabs (YAML does not allow tabs for indentation)"
    if "mapping values are not allowed here" in problem:
        return (" — is this line indented deeper than the key above it? Keys of one mapping start in the same "
                "column; a nested mapping goes under a key that ends with ':' and has nothing after it")
    if "expected <block end>" in problem or "did not find expected key" in problem:
        return " — check the indentation of this line against the lines above (keys of one mapping line up)"
    return ""


def _duplicate_keys(node: yaml.Node, file: str, path: Loc = ()) -> list[MappingProblem]:
    """YAML keeps the last of two equal keys silently; in a hand-edited file that is a mistake."""
    out: list[MappingProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None and k.tag != "tag:yaml.org,2002:merge":
                if key in seen:
                    out.append(MappingProblem(file, k.start_mark.line + 1, key_path(path + (key,)),
                                              f"duplicate key {key!r} (first on line {seen[key]}); "
                                              "YAML would silently keep only the last one"))
                else:
                    seen[key] = k.start_mark.line + 1
            out.extend(_duplicate_keys(v, file, path + (key,)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicate_keys(item, file, path + (i,)))
    return out


def _record_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                continue
            p = path + (k.value,)
            lines[p] = k.start_mark.line + 1
            _record_lines(v, p, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            # `fields: [id, sku]`, `enrich: [a, b]`: the validated models address items by value
            if isinstance(item, yaml.ScalarNode):
                lines.setdefault(path + (item.value,), item.start_mark.line + 1)
            _record_lines(item, path + (i,), lines)


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    """Line of the longest prefix of loc that is a key in the file."""
    for k in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:k]))
        if line is not None:
            return line
    return None


def key_path(loc: Iterable[Any]) -> str:
    """("children", 0, "enrich", 1) -> "children[0].enrich[1]"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --------------------------------------------------------------------------- pydantic errors -> problems


def _kind(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _matches_kind(tag: str, value: Any) -> bool:
    t = tag.lower()
    if isinstance(value, dict):
        return t.startswith("dict") or tag in _MODEL_NAMES
    if isinstance(value, list):
        return t.startswith(("list", "tuple", "set"))
    if isinstance(value, bool):
        return t.startswith("bool")
    if isinstance(value, (int, float)):
        return t.startswith(("int", "float", "decimal"))
    if isinstance(value, str):
        return t.startswith(("str", "literal"))
    if value is None:
        return t.startswith("none")
    return False


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _is_union_tag(part: Any) -> bool:
    """pydantic names a union member in loc: "dict[str,FieldSpec]", "literal['*']", "FieldSpec", "str"."""
    if not isinstance(part, str) or part == "[key]":
        return False
    return "[" in part or part in _TYPE_TAGS or part in _MODEL_NAMES


def _split_loc(loc: Loc, data: Any) -> tuple[Loc, list[tuple[int, Loc, str]]]:
    """Walk a pydantic loc along the YAML data: (loc without union tags, [(index, loc prefix, tag)]).

    Keys present in the data always win over the tag heuristic (a column may be called "Status").
    """
    clean: list[Any] = []
    tags: list[tuple[int, Loc, str]] = []
    cur = data
    resolved = True
    for i, part in enumerate(loc):
        if resolved:
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
                clean.append(part)
                continue
            if isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                cur = cur[part]
                clean.append(part)
                continue
        if _is_union_tag(part):  # never a key of ours: keys are lower-case words without brackets
            tags.append((i, tuple(loc[:i]), part))
            continue
        resolved = False
        clean.append(part)
    return tuple(clean), tags


def _value_at(data: Any, loc: Loc) -> Any:
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def _prune_union_branches(errors: list[dict], data: Any) -> list[dict]:
    """For a union (fields: '*' | {...}) pydantic reports every branch; keep the branch the input looks like."""
    branches: dict[Loc, dict[str, list[int]]] = {}
    for n, err in enumerate(errors):
        _, tags = _split_loc(tuple(err["loc"]), data)
        for _, prefix, tag in tags[:1]:
            branches.setdefault(prefix, {}).setdefault(tag, []).append(n)
    drop: set[int] = set()
    for prefix, by_tag in branches.items():
        if len(by_tag) < 2:
            continue
        value = _value_at(data, _split_loc(prefix, data)[0])
        matching = [t for t in by_tag if _matches_kind(t, value)]
        if matching:
            for t, ns in by_tag.items():
                if t not in matching:
                    drop.update(ns)
    return [e for n, e in enumerate(errors) if n not in drop]


def _unwrap(t: Any) -> Any:
    """Optional[X] / X | Literal / Annotated[X, ...] -> the model, dict or list member if any, else t."""
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(t)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(t) if a is not type(None)]
        for m in members:
            if (inspect.isclass(m) and issubclass(m, BaseModel)) or typing.get_origin(m) in (dict, list):
                return m
        return members[0] if len(members) == 1 else t
    return t


def _model_field(model: type[BaseModel], key: Any) -> Any:
    for name, f in model.model_fields.items():
        if key == (f.alias or name) or key == name:
            return f
    return None


def _type_at(loc: Loc) -> Any:
    """The schema type expected at a key path (without union tags), None if unknown."""
    t: Any = AggregateMapping
    for part in loc:
        t = _unwrap(t)
        if inspect.isclass(t) and issubclass(t, BaseModel):
            f = _model_field(t, part)
            if f is None:
                return None
            t = f.annotation
        elif typing.get_origin(t) is list:
            t = typing.get_args(t)[0]
        elif typing.get_origin(t) is dict:
            t = typing.get_args(t)[1]
        else:
            return None
    return t


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _required_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if f.is_required()]


def _literal_choices(t: Any) -> list[Any] | None:
    t = _unwrap(t)
    if typing.get_origin(t) is Literal:
        return list(typing.get_args(t))
    if typing.get_origin(t) is typing.Union:
        for m in typing.get_args(t):
            if typing.get_origin(m) is Literal:
                return list(typing.get_args(m))
    return None


def _suggest(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fmt_choices(choices: Iterable[Any]) -> str:
    return ", ".join(str(c) for c in choices)


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list (`[a, b]` or one `- item` per line)",
    "dict_type": "a mapping (`key: value` lines)",
    "float_type": "a number", "float_parsing": "a number",
}


def _describe(err: dict, loc: Loc) -> str:
    """A user-facing message for one pydantic error at the clean key path loc."""
    typ = err["type"]
    value = err.get("input")
    if typ == "extra_forbidden":
        model = _unwrap(_type_at(loc[:-1]))
        allowed = _allowed_keys(model) if inspect.isclass(model) and issubclass(model, BaseModel) else []
        return (f"unknown key {loc[-1]!r}{_suggest(loc[-1], allowed)} — allowed here: {_fmt_choices(allowed)}"
                if allowed else f"unknown key {loc[-1]!r}")
    if typ == "missing":
        model = _unwrap(_type_at(loc[:-1]))
        msg = f"required key {loc[-1]!r} is missing"
        if inspect.isclass(model) and issubclass(model, BaseModel):
            msg += f" — required here: {_fmt_choices(_required_keys(model))}"
        return msg
    if typ == "literal_error":
        if loc and loc[-1] == "[key]":  # a key of a dict with literal keys, e.g. commands: {insrt: ...}
            dict_type = _unwrap(_type_at(loc[:-2]))
            key_type = typing.get_args(dict_type)[0] if typing.get_origin(dict_type) is dict else None
            choices = _literal_choices(key_type) or []
            return f"unknown key {value!r}{_suggest(value, choices)} — allowed here: {_fmt_choices(choices)}"
        choices = _literal_choices(_type_at(loc)) or []
        if not choices:
            return f"{_kind(value)} is not allowed — {err['msg']}"
        return f"{_kind(value)} is not allowed{_suggest(value, choices)} — allowed: {_fmt_choices(choices)}"
    if typ in ("model_type", "model_attributes_type"):
        model = _unwrap(_type_at(loc))
        keys = _allowed_keys(model) if inspect.isclass(model) and issubclass(model, BaseModel) else []
        return f"expected a mapping with the keys {_fmt_choices(keys)}, got {_kind(value)}"
    if typ in _EXPECTED:
        return f"expected {_EXPECTED[typ]}, got {_kind(value)}"
    if typ in ("value_error", "assertion_error"):
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        return re.sub(r"^(Value error|Assertion failed), ", "", msg)
    if typ == "too_short":
        return "must not be empty"
    return f"{err['msg']} (got {_kind(value)})"


def _validation_problems(exc: pydantic.ValidationError, data: Any, lines: dict[Loc, int],
                         file: str) -> list[MappingProblem]:
    out: list[MappingProblem] = []
    seen: set[tuple] = set()
    for err in _prune_union_branches(exc.errors(include_url=False), data):
        loc, _ = _split_loc(tuple(err["loc"]), data)
        shown = loc[:-1] if loc and loc[-1] == "[key]" else loc
        problem = MappingProblem(file, line_for(lines, shown), key_path(shown), _describe(err, loc))
        if (problem.line, problem.key, problem.message) not in seen:
            seen.add((problem.line, problem.key, problem.message))
            out.append(problem)
    return out


# --------------------------------------------------------------------------- rules across keys


def _unknown_root_fields(unknown: dict[str, list[tuple[Loc, str]]], unused: list[str], root_fields: list[str],
                         root_cols: dict[str, str]) -> list[tuple[Loc, str]]:
    """Transitions and enrich naming fields the root does not have. When several of them agree on a
    name and a root field nothing references is close to it, the field is the likely typo: ONE problem
    at the field's line (not one per reference, each suggesting the typo as the fix)."""
    out: list[tuple[Loc, str]] = []
    for name, refs in unknown.items():
        renamed = next((n for n, c in root_cols.items() if c == name), None)
        if renamed is not None:
            out.extend((loc, f"{what} {name!r}: column {name} is carried as {renamed!r}; use the field name")
                       for loc, what in refs)
            continue
        close = difflib.get_close_matches(name, unused, n=1, cutoff=0.75)
        if close and len(refs) >= 2:
            field = close[0]
            users = ", ".join(key_path(loc) for loc, _ in refs)
            out.append((("root", "fields", root_cols.get(field, field)),
                        f"field {field!r} looks like a typo of {name!r}, the name {users} use: rename the field "
                        f"to {name!r} (or, if {field!r} is right, change those references)"))
            continue
        out.extend((loc, f"{what} {name!r} is not a field of the root{_suggest(name, root_fields)} — root fields: "
                         f"{_fmt_choices(root_fields)}") for loc, what in refs)
    return out


def semantic_problems(agg: AggregateMapping) -> list[tuple[Loc, str]]:
    """Problems of a well-formed mapping that pydantic cannot see key by key: [(key path, message)].

    Usable on programmatically built mappings too; load_mappings turns the key paths into lines.
    """
    out: list[tuple[Loc, str]] = []
    root_fields = agg.root.field_names()
    root_cols = {name: col for col, name, _ in (agg.root.field_plan() or [])}
    tables: list[tuple[Loc, TableMapping]] = [(("root",), agg.root)]
    tables += [(("children", i), c) for i, c in enumerate(agg.children)]
    for base, tm in tables:
        plain = [name for _, name, _ in (tm.field_plan() or [])]
        for name, lk in tm.lookups.items():
            if name in plain:
                out.append((base + ("lookups", name), f"lookup {name!r} has the name of a field of {tm.table}; "
                            "give it another name"))
            if tm.field_plan() is not None and lk.from_ not in plain:
                out.append((base + ("lookups", name, "from"), f"from {lk.from_!r} is not a field of {tm.table}"
                            f"{_suggest(lk.from_, plain)} — fields: {_fmt_choices(plain)}"))

    def check_root_field(loc: Loc, name: str, what: str) -> None:
        if root_fields is None:  # fields: '*': the field names are the columns (checked live)
            if name in agg.root.exclude:
                out.append((loc, f"{what} {name!r} is excluded from the root's fields"))
            return
        if name in root_fields:
            used.add(name)
            return
        unknown.setdefault(name, []).append((loc, what))

    unknown: dict[str, list[tuple[Loc, str]]] = {}
    used: set[str] = set()

    seen_transitions: dict[tuple, int] = {}
    for i, t in enumerate(agg.root.transitions):
        check_root_field(("root", "transitions", i, "field"), t.field, "transition field")
        if t.from_ == t.to and t.from_ != "*":
            out.append((("root", "transitions", i, "to"),
                        f"from and to are both {t.to!r}: an update that does not change {t.field} never fires"))
        key = (t.field, repr(t.from_), repr(t.to))
        if key in seen_transitions:
            out.append((("root", "transitions", i),
                        f"the same transition ({t.field}: {t.from_!r} -> {t.to!r}) is already "
                        f"transitions[{seen_transitions[key]}]"))
        else:
            seen_transitions[key] = i

    for i, child in enumerate(agg.children):
        for j, name in enumerate(child.enrich):
            check_root_field(("children", i, "enrich", j), name, "enrich field")
    out.extend(_unknown_root_fields(unknown, [f for f in root_fields or [] if f not in used], root_fields or [],
                                    root_cols))

    names: dict[str, int] = {}
    for i, child in enumerate(agg.children):
        if child.name in names:
            out.append((("children", i, "name"), f"child name {child.name!r} is already used by "
                                                  f"children[{names[child.name]}]"))
        else:
            names[child.name] = i
        if len(child.parent_key) != len(agg.root.id):
            out.append((("children", i, "parent_key"),
                        f"has {len(child.parent_key)} column(s) ({_fmt_choices(child.parent_key)}) but root.id has "
                        f"{len(agg.root.id)} ({_fmt_choices(agg.root.id)}): list this table's columns holding "
                        "the root's id, in the order of root.id"))

    # two tables of one aggregate asking for the same command type would be indistinguishable
    entities: list[tuple[Loc, TableMapping]] = [(("root",), agg.root)]
    entities += [(("children", i), c) for i, c in enumerate(agg.children)]
    used: dict[str, str] = {}
    for base, tm in entities:
        for op in ("insert", "update", "delete", "snapshot"):
            ctype = agg.command_type(tm, op)
            where = key_path(base + ("commands", op))
            if ctype in used:
                loc = base + ("commands", op) if op in tm.commands else base
                out.append((loc, f"command type {ctype!r} ({where}) is also the command of {used[ctype]}; "
                                 "give each table and operation its own command name"))
            else:
                used[ctype] = where

    if agg.decider:
        problem = decider_problem(agg.decider)
        if problem:
            out.append((("decider",), problem))
    return out


def decider_problem(path: str) -> str | None:
    """None if `package.module:ClassName` imports and names a class, else what is wrong."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any error while importing user code is reported
        return (f"cannot import module {module_name!r} for the decider: {type(e).__name__}: {e} "
                "(it must be importable by the daemon's Python: an installed package or on PYTHONPATH)")
    obj = getattr(module, attr, None)
    if obj is None:
        names = [n for n in dir(module) if not n.startswith("_")]
        return f"module {module_name!r} has no attribute {attr!r}{_suggest(attr, names)}"
    if not inspect.isclass(obj):
        return f"{path} is a {type(obj).__name__}, not a class: the decider must name a class"
    return None


# --------------------------------------------------------------------------- the set


class MappingSet:
    """Every aggregate mapping of a directory, indexed by table, with a precompiled translator."""

    def __init__(self, aggregates: list[AggregateMapping], files: dict[str, str] | None = None,
                 lines: dict[str, dict[Loc, int]] | None = None, drop_unchanged_updates: bool = True,
                 signal_table: str | None = None) -> None:
        from cdc_bridge.mapping.translate import Translator

        self.aggregates: list[AggregateMapping] = list(aggregates)
        # a table may feed several aggregates: every (aggregate, table mapping, "root" | child name)
        self.by_table: dict[str, list[tuple[AggregateMapping, TableMapping, str]]] = {}
        for agg in self.aggregates:
            self.by_table.setdefault(agg.root.table, []).append((agg, agg.root, "root"))
            for child in agg.children:
                self.by_table.setdefault(child.table, []).append((agg, child, child.name))
        self.files: dict[str, str] = dict(files or {})          # aggregate name -> file
        self._lines: dict[str, dict[Loc, int]] = dict(lines or {})
        self.drop_unchanged_updates = drop_unchanged_updates
        self.signal_table = signal_table   # source.signal_table: its inserts become signal commands
        from cdc_bridge.mapping.lookups import reference_tables

        self.references = reference_tables(self.aggregates)   # reference tables of lookups
        self._translator = Translator(self.aggregates, drop_unchanged_updates=drop_unchanged_updates,
                                      signal_table=signal_table)

    def with_signal_table(self, table: str | None) -> "MappingSet":
        """The same mappings, also translating the signal table (ad-hoc re-snapshot requests)."""
        if table == self.signal_table:
            return self
        return MappingSet(self.aggregates, self.files, self._lines, self.drop_unchanged_updates, table)

    def aggregate(self, name: str) -> AggregateMapping:
        for agg in self.aggregates:
            if agg.aggregate == name:
                return agg
        raise KeyError(name)

    def locate(self, aggregate: str, loc: Loc) -> tuple[str | None, int | None]:
        """(file, line) of a key path of an aggregate's mapping, for messages; (None, None) if unknown."""
        return self.files.get(aggregate), line_for(self._lines.get(aggregate, {}), loc)

    def tables_and_columns(self) -> dict[str, set[str] | None]:
        """schema.table -> columns the source must decode (fields ∪ id ∪ parent_key ∪ where); None = all."""
        out: dict[str, set[str] | None] = {}
        for table, entries in self.by_table.items():
            cols: set[str] | None = set()
            for _, tm, _ in entries:
                c = tm.columns()
                cols = None if c is None or cols is None else cols | c
            out[table] = cols
        for ref in self.references.values():
            if ref.table not in out:
                out[ref.table] = set(ref.columns)
            elif out[ref.table] is not None:
                out[ref.table] = out[ref.table] | ref.columns   # type: ignore[operator]
        if self.signal_table:
            out[self.signal_table] = None
        return out

    def snapshot_aggregates(self) -> list[AggregateMapping]:
        """What a snapshot reads: the reference tables of lookups first (as pseudo aggregates), then the
        aggregates, so that the aggregates' lookups resolve."""
        return [r.snapshot_mapping() for r in self.references.values()] + list(self.aggregates)

    def translate(self, txn: SourceTransaction, wire: bool = False) -> tuple[list[Command], list[DeadLetter]]:
        """A source transaction's row changes -> (commands, dead letters); see mapping/translate.py.
        wire: the commands as command_to_wire's tuples instead (what the reader process sends)."""
        return self._translator.translate(txn, wire)

    def __repr__(self) -> str:
        return f"MappingSet({[a.aggregate for a in self.aggregates]})"


def load_mappings(directory: str | Path) -> MappingSet:
    """Read every *.yaml / *.yml file of `directory` (not recursive; dotfiles skipped).

    Raises MappingError with every problem of every file (file:line: key: message).
    """
    directory = Path(directory)
    problems: list[MappingProblem] = []
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise MappingError([MappingProblem(str(directory), None, "",
                                           f"mappings directory {what}")], str(directory))
    paths = sorted(p for p in directory.iterdir()
                   if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file())
    if not paths:
        raise MappingError([MappingProblem(str(directory), None, "",
                                           "no mapping files (*.yaml or *.yml) in this directory: "
                                           "write one file per aggregate, see docs/mappings.md")], str(directory))

    loaded: list[tuple[str, AggregateMapping, dict[Loc, int]]] = []
    for path in paths:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(MappingProblem(file, None, "", f"cannot read the file: {e}"))
            continue
        agg, lines, file_problems = _load_file(text, file)
        problems.extend(sorted(file_problems, key=lambda p: p.line or 0))
        if agg is not None:
            loaded.append((file, agg, lines))

    problems.extend(_cross_file_problems(loaded))
    problems.extend(_lookup_key_problems(loaded))
    if problems:
        raise MappingError(problems, str(directory))
    return MappingSet([a for _, a, _ in loaded], files={a.aggregate: f for f, a, _ in loaded},
                      lines={a.aggregate: ln for _, a, ln in loaded})


def _load_file(text: str, file: str) -> tuple[AggregateMapping | None, dict[Loc, int], list[MappingProblem]]:
    data, lines, problems = _parse_yaml(text, file)
    if data is None:
        return None, lines, problems
    if not isinstance(data, dict):
        problems.append(MappingProblem(file, 1, "", f"the file must be a mapping with the keys "
                                       f"{_fmt_choices(_allowed_keys(AggregateMapping))}, got {_kind(data)}"))
        return None, lines, problems
    try:
        agg = AggregateMapping.model_validate(data)
    except pydantic.ValidationError as e:
        # rules across keys need a well-formed mapping: they run once these are fixed
        return None, lines, problems + _validation_problems(e, data, lines, file)
    for loc, message in semantic_problems(agg):
        problems.append(MappingProblem(file, line_for(lines, loc), key_path(loc), message))
    # well-formed even with problems: it still takes part in the checks across files
    return agg, lines, problems


def _lookup_key_problems(loaded: list[tuple[str, AggregateMapping, dict[Loc, int]]]) -> list[MappingProblem]:
    from cdc_bridge.mapping.lookups import reference_tables

    try:
        reference_tables([agg for _, agg, _ in loaded])
    except ValueError as e:
        file = loaded[0][0] if loaded else ""
        return [MappingProblem(file, None, "lookups", str(e))]
    return []


def _cross_file_problems(loaded: list[tuple[str, AggregateMapping, dict[Loc, int]]]) -> list[MappingProblem]:
    out: list[MappingProblem] = []
    tables: dict[str, str] = {}
    aggregates: dict[str, str] = {}
    topics: dict[str, str] = {}
    for file, agg, lines in loaded:
        def at(loc: Loc) -> str:
            return f"{file}:{line_for(lines, loc)}"

        if agg.aggregate in aggregates:
            out.append(MappingProblem(file, line_for(lines, ("aggregate",)), "aggregate",
                                      f"aggregate {agg.aggregate!r} is already defined at {aggregates[agg.aggregate]}; "
                                      "aggregate names must be unique"))
        else:
            aggregates[agg.aggregate] = at(("aggregate",))
        topic_loc: Loc = ("topic",) if agg.topic else ("aggregate",)
        if agg.events_topic in topics:
            out.append(MappingProblem(file, line_for(lines, topic_loc), key_path(topic_loc),
                                      f"events topic {agg.events_topic!r} is already the topic of {topics[agg.events_topic]}; "
                                      "each aggregate publishes to its own topic (set topic:)"))
        else:
            topics[agg.events_topic] = f"aggregate {agg.aggregate} ({at(topic_loc)})"
        entries: list[tuple[Loc, TableMapping, str]] = [(("root", "table"), agg.root, "root")]
        entries += [(("children", i, "table"), c, f"children[{i}] ({c.name})") for i, c in enumerate(agg.children)]
        seen_here: dict[str, str] = {}
        for loc, tm, what in entries:
            # several aggregates may map one table (each with its own where); one aggregate maps it once
            if tm.table in seen_here:
                out.append(MappingProblem(file, line_for(lines, loc), key_path(loc),
                                          f"table {tm.table} is already mapped in this aggregate by {seen_here[tm.table]}; "
                                          "an aggregate maps a table once (other aggregates may map it too)"))
            else:
                seen_here[tm.table] = f"{at(loc)} ({what})"
                tables.setdefault(tm.table, f"{at(loc)} (aggregate {agg.aggregate}, {what})")
    return out

