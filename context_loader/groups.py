"""``@Group``: a class of ``@Variable`` methods, instantiated (maybe several times) in a
context file; :func:`expand_groups` turns the instances into ordinary Variables.

The rules (names, titles, tags, inheritance, ``self#`` links; where our spec and DAMNIT
0.4.0 differ) are in ``docs/groups.md``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import re
import types
from collections import deque
from collections.abc import Iterable

from .errors import GroupError
from .variable import Variable

__all__ = ["Group", "GroupVariable", "expand_groups", "is_group_instance"]

_PROPERTIES = ("title", "tags", "sep")
_OURS = "damnit_group"            # metadata key of the fields @Group adds
_GLOB_CHARS = "*?["
_GLOB_RE = re.compile(r"[!?*\[\]]")   # replaced by "_" in placeholder names


def Group(cls=None, /, *, title=None, tags=None, sep="/"):
    """Decorate a class of ``@Variable`` methods ``f(self, run, ...)`` to make a group.

    ``title``, ``tags`` and ``sep`` are the defaults of the instances' group properties.
    """
    if cls is not None and not isinstance(cls, type):
        raise TypeError(f"@Group decorates a class, not {cls!r}; "
                        "for a title write @Group(title=...)")
    label = "@Group(...)"
    _check_title(title, label)
    _check_sep(sep, label)
    tags = _normalize_tags(tags, label)

    def wrap(cls):
        return _make_group(cls, title, tags, sep)

    return wrap if cls is None else wrap(cls)


def is_group_instance(obj) -> bool:
    """True for an instance of a ``@Group`` class (or of a subclass of one)."""
    return getattr(type(obj), "__damnit_group__", None) is not None


class GroupVariable:
    """``instance.method`` of a group: a link to that instance's Variable.

    Give it to another group's field (``A(v=a1.asdf)``) and ``self#v`` depends on it.
    """

    __slots__ = ("group", "attr", "variable")

    def __init__(self, group, attr: str, variable: Variable):
        self.group = group
        self.attr = attr
        self.variable = variable

    def __repr__(self):
        return f"<variable {self.attr!r} of a {type(self.group).__name__} group>"


# -- the decorator's work -----------------------------------------------------------------

def _make_group(cls, title, tags, sep):
    own_ann = dict(cls.__dict__.get("__annotations__", {}))
    clash = sorted(p for p in _PROPERTIES if p in own_ann or p in cls.__dict__)
    if clash:
        raise GroupError(
            f"Group class {cls.__name__!r} cannot define {', '.join(map(repr, clash))}: "
            "these are group properties; set them with @Group(title=..., tags=..., sep=...) "
            f"or when instantiating, e.g. {cls.__name__}(title=...)")
    explicit_name = not _user_defines_name(cls)

    # A group instance as a declared field's default: each owner gets its own copy (and
    # Python 3.11 dataclasses refuse unhashable defaults anyway).
    for attr in own_ann:
        default = cls.__dict__.get(attr)
        if is_group_instance(default):
            setattr(cls, attr, dataclasses.field(
                default_factory=functools.partial(_fresh_copy, default)))

    def ours(default, kw_only=True):
        return dataclasses.field(default=default, kw_only=kw_only, metadata={_OURS: True})

    own_ann.update(title="str | None", tags="tuple[str, ...]", sep="str")
    cls.title = ours(title, kw_only=False)
    cls.tags = ours(tags)
    cls.sep = ours(sep)
    if explicit_name:
        own_ann["name"] = "str | None"
        cls.name = ours(None)
    cls.__annotations__ = own_ann
    cls.__damnit_group__ = {"explicit_name": explicit_name}

    user_post_init = getattr(cls, "__post_init__", None)

    def __post_init__(self):
        _init_instance(self)
        if user_post_init is not None:
            user_post_init(self)

    cls.__post_init__ = __post_init__
    if cls.__getattribute__ is object.__getattribute__:
        cls.__getattribute__ = _group_getattribute
    return dataclasses.dataclass(cls, kw_only=True)


def _user_defines_name(cls) -> bool:
    """Whether the class hierarchy has its own ``name`` (field or class attribute)."""
    for klass in cls.__mro__:
        if klass is object:
            return False
        if "name" in klass.__dict__ or "name" in klass.__dict__.get("__annotations__", {}):
            f = klass.__dict__.get("__dataclass_fields__", {}).get("name")
            return not (f is not None and f.metadata.get(_OURS))
    return False


def _init_instance(group):
    """Check the group properties and copy class-level group instances (see module doc)."""
    label = f"{type(group).__name__}(...)"
    group.tags = _check_properties(group, label)
    if _has_explicit_name(group):
        name = group.name
        if name is not None and not (isinstance(name, str) and name and all(
                part.isidentifier() for part in name.split("."))):
            raise GroupError(f"{label}: name={name!r} must be a Python identifier or a "
                             "dotted name like 'mid.xgm'")
    state = object.__getattribute__(group, "__dict__")
    for klass in reversed(type(group).__mro__[:-1]):     # without object
        for attr in vars(klass):
            if attr not in state:
                template = getattr(type(group), attr, None)
                if is_group_instance(template):
                    state[attr] = _fresh_copy(template)


def _fresh_copy(group, memo=None):
    """A copy of a group instance whose nested group instances are copies too."""
    memo = {} if memo is None else memo
    if id(group) in memo:
        return memo[id(group)]
    new = memo[id(group)] = copy.copy(group)
    state = object.__getattribute__(new, "__dict__")
    for attr, value in list(state.items()):
        if is_group_instance(value):
            state[attr] = _fresh_copy(value, memo)
    return new


def _group_getattribute(self, attr):
    """``instance.method`` gives a GroupVariable link instead of the shared Variable."""
    value = object.__getattribute__(self, attr)
    if (isinstance(value, Variable) and _is_method(value)
            and attr not in object.__getattribute__(self, "__dict__")):
        return GroupVariable(self, attr, value)
    return value


def _is_method(var: Variable) -> bool:
    """Whether the Variable decorates a function defined in a class body."""
    qualname = getattr(var.func, "__qualname__", "")
    owner = qualname.rpartition(".")[0]
    return bool(owner) and not owner.endswith("<locals>")


def _has_explicit_name(group) -> bool:
    return type(group).__damnit_group__["explicit_name"]


def _check_properties(group, label) -> tuple[str, ...]:
    """Check an instance's title and sep; return its tags as a tuple."""
    _check_title(group.title, label)
    _check_sep(group.sep, label)
    return _normalize_tags(group.tags, label)


def _check_title(title, label):
    if title is not None and not isinstance(title, str):
        raise GroupError(f"{label}: title={title!r} must be a string")


def _check_sep(sep, label):
    if not isinstance(sep, str):
        raise GroupError(f"{label}: sep={sep!r} must be a string")


def _normalize_tags(tags, label) -> tuple[str, ...]:
    if tags is None:
        return ()
    given = tags
    if isinstance(tags, str):
        tags = (tags,)
    if isinstance(tags, Iterable) and not isinstance(tags, (bytes, dict)):
        tags = tuple(tags)
        if all(isinstance(t, str) and t for t in tags):
            return tags
    raise GroupError(f"{label}: tags={given!r} must be a non-empty string or a list of "
                     "non-empty strings")


# -- expansion ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Node:
    """A named group instance: its name, title path and accumulated tags."""
    group: object
    name: str
    title: str
    tags: frozenset


def expand_groups(namespace: dict) -> list[Variable]:
    """The Variables of every group instance reachable from ``namespace`` (the globals of
    an executed context file), plus placeholders for missing optional components.

    Each is a copy with its final ``name``, ``title``, ``tags`` (sorted tuple), ``func``
    bound to the instance and ``resolved_annotations`` (``self#`` -> ``var#<name>``).
    Raises :class:`GroupError` when names clash or an annotation cannot be resolved.
    """
    nodes = _name_instances(namespace)
    taken = {v.name: "a top-level Variable" for v in namespace.values()
             if isinstance(v, Variable) and v.name is not None}
    out: dict[str, Variable] = {}
    for node in nodes.values():
        for var, is_placeholder in _expand(node, nodes):
            if is_placeholder and var.name in out:
                continue  # one placeholder serves every dependent
            if var.name in out or var.name in taken:
                other = taken.get(var.name, "another group variable")
                raise GroupError(f"Duplicate variable name {var.name!r} from group "
                                 f"{node.name!r}: {other} has the same name")
            out[var.name] = var
    return list(out.values())


def _name_instances(namespace: dict) -> dict[int, _Node]:
    """Breadth-first naming of group instances (see the module doc), by ``id``."""
    best: dict[int, tuple[int, dict]] = {}   # id -> (depth, {path: (parent id, attr)|None})
    queue = deque()

    def offer(group, path, depth, parent):
        if _has_explicit_name(group) and group.name is not None:
            path, parent = group.name, None
        entry = best.get(id(group))
        if entry is None:
            best[id(group)] = (depth, {path: parent})
            queue.append((group, depth))
        elif entry[0] == depth:
            entry[1].setdefault(path, parent)

    for key, value in namespace.items():
        if not key.startswith("__") and is_group_instance(value):
            offer(value, key, 0, None)

    nodes: dict[int, _Node] = {}
    names: dict[str, object] = {}
    while queue:
        group, depth = queue.popleft()
        paths = best[id(group)][1]
        if len(paths) > 1:
            raise GroupError(
                f"Group instance of {type(group).__name__!r} is assigned to multiple names "
                f"{sorted(paths)} without an explicit name; assign it to one global "
                f"variable first (e.g. shared = {type(group).__name__}(...)) and use that")
        (name, parent), = paths.items()
        if name in names:
            raise GroupError(f"Group name {name!r} is used by multiple group instances "
                             f"({type(names[name]).__name__} and {type(group).__name__})")
        names[name] = group
        _check_properties(group, f"group {name!r}")  # may have changed since __init__
        segment = group.title if group.title is not None else (
            name if parent is None else parent[1])
        if parent is None:
            node = _Node(group, name, segment, frozenset(group.tags))
        else:
            up = nodes[parent[0]]
            node = _Node(group, name, f"{up.title}{up.group.sep}{segment}",
                         up.tags | frozenset(group.tags))
        nodes[id(group)] = node
        for attr, value in list(vars(group).items()):
            if is_group_instance(value):
                offer(value, f"{name}.{attr}", depth + 1, (id(group), attr))
    return nodes


def _group_variables(cls) -> dict[str, Variable]:
    """The ``@Variable`` methods of a group class by attribute, parents' first."""
    found: dict[str, Variable] = {}
    for klass in reversed(cls.__mro__):
        annotated = klass.__dict__.get("__annotations__", {})
        for attr, value in vars(klass).items():
            if isinstance(value, Variable) and _is_method(value) and attr not in annotated:
                found[attr] = value
            elif attr in found:
                del found[attr]     # replaced by a non-Variable in a subclass
    return found


def _expand(node: _Node, nodes: dict[int, _Node]) -> list[tuple[Variable, bool]]:
    """The instance's Variables and placeholders, as (variable, is_placeholder)."""
    group = node.group
    out = []
    for attr, var in _group_variables(type(group)).items():
        full = f"{node.name}.{attr}"
        func = types.MethodType(var.func, group)
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError) as e:
            raise GroupError(f"Variable {full!r}: cannot read its signature ({e})") from None
        if not params:
            raise GroupError(f"Variable {full!r} of group {node.name!r}: a group method "
                             "takes (self, run, ...), e.g. 'def f(self, run):'")
        annotations = {}
        for p in params[1:]:
            if not isinstance(p.annotation, str):
                continue
            annotation = _unquote(p.annotation)
            if annotation.startswith("self#"):
                where = (f"Variable {full!r} of group {node.name!r} "
                         f"({type(group).__name__}), argument {p.name!r}: {annotation!r}")
                annotation, placeholder = _resolve_self(annotation, node, nodes, where)
                if placeholder is not None:
                    out.append((placeholder, True))
            annotations[p.name] = annotation
        var_tags = _normalize_tags(var.tags, f"Variable {full!r}")
        out.append((var.copy(
            name=full,
            title=f"{node.title}{group.sep}{var.title}",
            tags=tuple(sorted(node.tags | set(var_tags))),
            func=func,
            resolved_annotations=annotations,
        ), False))
    return out


def _resolve_self(annotation: str, node: _Node, nodes: dict[int, _Node], where: str):
    """``self#a.b.c`` -> (``var#<full name>``, placeholder Variable or None)."""
    parts = annotation.removeprefix("self#").split(".")
    if not all(parts):
        raise GroupError(f"{where}: expected 'self#<attribute>[.<attribute>...]'")
    *path, leaf = parts
    current = node
    for i, part in enumerate(path):          # the groups leading to the leaf
        if any(c in part for c in _GLOB_CHARS):
            raise GroupError(f"{where}: a glob pattern is only allowed in the last part "
                             f"of the path, not in {part!r}")
        value = _attribute(current, part, where)
        if value is None:
            return _placeholder(current, ".".join(parts[i:]))
        if not is_group_instance(value):
            raise GroupError(f"{where}: {part!r} of {_describe(current)} is of type "
                             f"{type(value).__name__!r}, not a group, so it has no "
                             f"{parts[i + 1]!r}")
        current = _node_of(value, part, current, nodes, where)
    if any(c in leaf for c in _GLOB_CHARS):
        return f"var#{current.name}.{leaf}", None
    value = _attribute(current, leaf, where)
    if value is None:
        return _placeholder(current, leaf)
    if isinstance(value, GroupVariable):
        owner = nodes.get(id(value.group))
        if owner is None:
            raise GroupError(
                f"{where}: {leaf!r} links to variable {value.attr!r} of a "
                f"{type(value.group).__name__} instance that is not in the context "
                "file; assign that instance to a global variable")
        return f"var#{owner.name}.{value.attr}", None
    if isinstance(value, Variable):
        return f"var#{value.name}", None
    if is_group_instance(value):
        raise GroupError(f"{where}: {leaf!r} is a group ({type(value).__name__}); "
                         f"name one of its variables: 'self#...{leaf}.<variable>'")
    raise GroupError(f"{where}: {leaf!r} of {_describe(current)} is of type "
                     f"{type(value).__name__!r}, but a Variable is required for a self# "
                     "dependency")


def _describe(node: _Node) -> str:
    return f"group {node.name!r} ({type(node.group).__name__})"


def _attribute(node: _Node, attr: str, where: str):
    try:
        return getattr(node.group, attr)
    except AttributeError:
        raise GroupError(f"{where}: {_describe(node)} has no attribute {attr!r}") from None


def _node_of(group, attr: str, parent: _Node, nodes: dict[int, _Node], where: str) -> _Node:
    node = nodes.get(id(group))
    if node is None:  # e.g. a property returning a new instance
        raise GroupError(f"{where}: {attr!r} of {_describe(parent)} is a group instance "
                         "that is not stored on the instance nor named in the context file")
    return node


def _placeholder(node: _Node, path: str):
    """A transient Variable returning None that stands in for a missing component."""
    name = f"{node.name}.__missing__.{_GLOB_RE.sub('_', path)}"

    def missing(run):
        return None

    var = Variable(transient=True)(missing)
    var = var.copy(name=name, title=name, tags=(), resolved_annotations={},
                   description=f"Placeholder: {path!r} of group {node.name!r} is None")
    return f"var#{name}", var


def _unquote(annotation: str) -> str:
    """``'"self#x"'`` (a quoted annotation under ``from __future__ import annotations``)."""
    if len(annotation) >= 2 and annotation[0] == annotation[-1] and annotation[0] in "'\"":
        return annotation[1:-1]
    return annotation
