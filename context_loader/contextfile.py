"""A loaded context file: its Variables in evaluation order, their dependency graph, checks.

Loading runs the file's code once, collects the top-level ``@Variable`` functions and the
variables of ``@Group`` instances, and checks everything at once: a broken file raises
:class:`ContextFileErrors` whose every problem names ``<file>:<line>`` and the variable.
"""
from __future__ import annotations

import ast
import difflib
import fnmatch
import hashlib
import inspect
import linecache
import re
import textwrap
import traceback
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from .errors import ContextFileErrors
from .groups import expand_groups
from .neighbours import make_importable
from .variable import RunData, Variable, _valid_data

_PACKAGE_DIR = str(Path(__file__).parent)
_GLOB_CHARS = "*?["
#: Decorator arguments that change how a variable is shown, not its value: editing them
#: updates the table's metadata without making stored values stale.
DISPLAY_ONLY = frozenset({"title", "description", "tags"})


@dataclass(frozen=True)
class Argument:
    """Where one argument of a Variable's function gets its value when evaluated.

    ``kind`` is ``"var"`` (``key`` is a name or glob pattern), ``"meta"``, ``"mymdc"`` or
    ``"param"`` (``key`` is the field); ``default`` is ``inspect.Parameter.empty`` if none.
    """
    name: str
    kind: str
    key: str
    default: object

    @property
    def has_default(self) -> bool:
        return self.default is not inspect.Parameter.empty

    @property
    def is_glob(self) -> bool:
        """A ``var#`` pattern such as ``xgm_*`` (DAMNIT: fnmatch over the results)."""
        return self.kind == "var" and any(c in self.key for c in _GLOB_CHARS)


class ContextFile:
    """The Variables of one context file, in topological (evaluation) order.

    Build with :meth:`from_path` or :meth:`from_str`; :meth:`select` gives the subset a
    run evaluates (it shares the Variables and graph with the file it came from).
    """

    def __init__(self, path: str, code: str, vars: dict[str, Variable],
                 deps: dict[str, tuple[str, ...]], arguments: dict[str, tuple[Argument, ...]]):
        self.path = path
        self.code = code
        self.vars = vars
        self._deps = deps
        self._arguments = arguments
        self._code_versions: dict[str, str] = {}

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def from_path(cls, path, import_dir=None) -> ContextFile:
        """Load the context file at ``path``; errors name it as given. The modules in
        ``import_dir`` (default: the file's folder) are importable from it, imported
        afresh (see :mod:`.neighbours`)."""
        path = str(path)
        try:
            code = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ContextFileErrors([f"{path}: cannot read the context file: {e}"],
                                    path) from None
        return cls.from_str(code, path, Path(path).parent if import_dir is None else import_dir)

    @classmethod
    def from_str(cls, code: str, path: str = "<string>", import_dir=None) -> ContextFile:
        """Load context code; ``path`` is the name used in errors and tracebacks, modules
        in ``import_dir`` (if given) are importable from it."""
        return _Loader(code, str(path), import_dir).load()

    # -- the graph ----------------------------------------------------------------------

    def direct_deps(self, name: str) -> set[str]:
        """Names of the variables ``name`` depends on directly (globs expanded)."""
        return set(self._deps[name])

    def all_deps(self, name: str) -> set[str]:
        """Names of every variable ``name`` depends on, directly or not."""
        seen: set[str] = set()
        pending = list(self._deps[name])
        while pending:
            dep = pending.pop()
            if dep not in seen:
                seen.add(dep)
                pending.extend(self._deps[dep])
        return seen

    def arguments(self, name: str) -> tuple[Argument, ...]:
        """The annotated arguments of a variable's function, in signature order."""
        return self._arguments[name]

    # -- selection ----------------------------------------------------------------------

    def select(self, run_data=RunData.ALL, variables=(), match=(), cluster=None, *,
               with_deps: bool = True) -> ContextFile:
        """The variables one evaluation runs, as DAMNIT's ``ContextFile.filter``.

        ``run_data``: RAW keeps raw variables, PROC keeps ``data="proc"`` ones (promoted
        ones included), ALL keeps all. ``variables`` are exact names and win over
        ``match``, case-insensitive substrings of titles (any of them). ``cluster``:
        None ignores the flag, True/False keep only cluster/non-cluster variables. Every
        dependency of a selected variable is added back, whatever its data or cluster
        (unless ``with_deps`` is False).
        """
        run_data = RunData(run_data)
        matches = [m.lower() for m in match]
        chosen = set()
        for name, var in self.vars.items():
            if run_data is not RunData.ALL and var.data is not run_data:
                continue
            if cluster is not None and bool(var.cluster) != bool(cluster):
                continue
            if variables:
                if name not in variables:
                    continue
            elif matches and not any(m in (var.title or name).lower() for m in matches):
                continue
            chosen.add(name)
        if with_deps:
            for name in list(chosen):
                chosen |= self.all_deps(name)
        return self.subset(chosen)

    def subset(self, names) -> ContextFile:
        """The variables ``names`` of this file (in evaluation order), sharing its graph."""
        return ContextFile(self.path, self.code,
                           {n: v for n, v in self.vars.items() if n in names},
                           self._deps, self._arguments)

    # -- what the Dagster side needs ----------------------------------------------------

    def code_version(self, name: str) -> str:
        """A hash of the variable's source (decorator included), the fields of its group
        instance, and the code versions of its dependencies: it changes when the way the
        variable is computed changes. Comments, layout, the docstring and the display-only
        decorator arguments (:data:`DISPLAY_ONLY`) are not part of it."""
        version = self._code_versions.get(name)
        if version is None:
            h = hashlib.sha256(self._source_of(self.vars[name]).encode())
            for dep in sorted(self._deps[name]):
                h.update(f"\0{dep}={self.code_version(dep)}".encode())
            version = self._code_versions[name] = h.hexdigest()[:16]
        return version

    def describe(self) -> list[dict]:
        """JSON-able metadata of every variable, in evaluation order."""
        out = []
        for name, var in self.vars.items():
            out.append({
                "name": name,
                "title": var.title,
                "description": var.description,
                "tags": list(var.tags) if var.tags is not None else None,
                "data": var.data.value,
                "cluster": bool(var.cluster),
                "transient": bool(var.transient),
                "units": var.units,
                "summary": var.summary,
                "deps": sorted(self._deps[name]),
                "code_version": self.code_version(name),
                "line": var.location()[1],
            })
        return out

    def _source_of(self, var: Variable) -> str:
        """The variable's source text (from the loaded code, not today's file), plus the
        fields of its group instance."""
        func = getattr(var.func, "__func__", var.func)
        code = getattr(func, "__code__", None)
        if code is not None and code.co_filename == self.path:
            lines = self.code.splitlines(True)[code.co_firstlineno - 1:]
            try:
                source = "".join(inspect.getblock(lines))
            except Exception:  # tokenizing from a line inside an expression (a lambda)
                source = lines[0] if lines else ""
        else:
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                source = repr((code.co_code, code.co_consts)) if code else repr(func)
        source = _computing_part(source)
        group = getattr(var.func, "__self__", None)
        if group is not None:
            source += "\0" + re.sub(r" at 0x[0-9a-fA-F]+", "", repr(group))
        return source

    def __repr__(self):
        return f"<ContextFile {self.path!r}: {len(self.vars)} variables>"


def _computing_part(source: str) -> str:
    """A function's source without what does not change its result: comments, layout,
    its docstring and the decorator arguments in :data:`DISPLAY_ONLY`. The source as it is
    when it does not parse on its own (a lambda)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return source
    func = tree.body[0] if tree.body else None
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return source
    body = func.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        func.body = body[1:] or [ast.Pass()]
    for decorator in func.decorator_list:
        if isinstance(decorator, ast.Call):
            decorator.keywords = [k for k in decorator.keywords if k.arg not in DISPLAY_ONLY]
    return ast.unparse(func)


class _Loader:
    """Runs a context file's code and checks what it defines, collecting every problem."""

    def __init__(self, code: str, path: str, import_dir=None):
        self.code = code
        self.path = path
        self.import_dir = import_dir
        self.problems: list[str] = []

    def load(self) -> ContextFile:
        namespace = self._execute()
        vars = self._collect(namespace)
        for var in vars.values():
            self._problem(var, *var.check())
        deps, arguments = self._dependencies(vars)
        order = self._order(vars, deps)
        self._check_names_and_titles(vars)
        if order is not None and all(_valid_data(v._data) for v in vars.values()):
            self._promote(vars, deps, order)
        if self.problems:
            raise ContextFileErrors(self.problems, self.path)
        ordered = {name: vars[name] for name in order}  # order is None only with problems
        return ContextFile(self.path, self.code, ordered, deps, arguments)

    # -- running the code ---------------------------------------------------------------

    def _execute(self) -> dict:
        # Tracebacks and inspect.getsource() then show the code that was loaded.
        linecache.cache[self.path] = (len(self.code), None, self.code.splitlines(True),
                                      self.path)
        try:
            codeobj = compile(self.code, self.path, "exec")
        except SyntaxError as e:
            raise ContextFileErrors([self._syntax_problem(e)], self.path) from None
        namespace = {"__file__": self.path}
        if self.import_dir is not None:
            make_importable(self.import_dir)
        try:
            exec(codeobj, namespace)
        except Exception as e:
            raise ContextFileErrors([self._exec_problem(e)], self.path) from None
        return namespace

    def _syntax_problem(self, e: SyntaxError) -> str:
        lines = traceback.format_exception_only(type(e), e)
        detail = "".join(line for line in lines[1:-1])  # the source line and the caret
        return f"{self.path}:{e.lineno}: {type(e).__name__}: {e.msg}\n{detail}".rstrip()

    def _exec_problem(self, e: Exception) -> str:
        frames = traceback.extract_tb(e.__traceback__)
        user = [i for i, f in enumerate(frames) if f.filename == self.path]
        start = user[0] if user else len(frames)
        line = frames[user[-1]].lineno if user else "?"
        shown = traceback.StackSummary.from_list(
            [f for f in frames[start:] if not f.filename.startswith(_PACKAGE_DIR)])
        summary = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        text = "".join(["Traceback (most recent call last):\n", *shown.format(), summary])
        return f"{self.path}:{line}: error while running the context file: {summary}\n{text}"

    # -- what it defines ----------------------------------------------------------------

    def _collect(self, namespace: dict) -> dict[str, Variable]:
        vars: dict[str, Variable] = {}
        for gname, obj in namespace.items():
            if not isinstance(obj, Variable) or any(obj is v for v in vars.values()):
                continue
            if obj.func is None:
                self.problems.append(f"{self.path}: {gname!r} is a Variable(...) that "
                                     "decorates no function")
            elif obj.name in vars:
                self._problem(obj, f"another Variable has the same name {obj.name!r} "
                                   f"({self._where(vars[obj.name])})")
            else:
                vars[obj.name] = obj
        try:
            group_vars = expand_groups(namespace)
        except Exception as e:
            self.problems.append(f"{self.path}: {type(e).__name__}: {e}")
            return vars
        for var in group_vars:
            if var.name in vars:
                self._problem(var, f"a group variable has the same name as "
                                   f"{self._where(vars[var.name])}")
            else:
                vars[var.name] = var
        return vars

    def _dependencies(self, vars):
        deps, arguments = {}, {}
        for name, var in vars.items():
            try:
                params = var.parameters()
                annotations = var.annotations()
            except (TypeError, ValueError):  # reported by Variable.check()
                params, annotations = [], {}
            args, found = [], []
            for p in params:
                kind, _, key = annotations.get(p.name, "").partition("#")
                if not key or kind not in ("var", "meta", "mymdc", "param"):
                    continue
                args.append(Argument(p.name, kind, key, p.default))
                if kind == "var":
                    found += self._resolve(var, key, vars)
            deps[name] = tuple(dict.fromkeys(found))
            arguments[name] = tuple(args)
        return deps, arguments

    def _resolve(self, var: Variable, pattern: str, vars) -> list[str]:
        if any(c in pattern for c in _GLOB_CHARS):
            found = [n for n in vars if n != var.name and fnmatch.fnmatchcase(n, pattern)]
            if not found:
                self._problem(var, f"missing dependency 'var#{pattern}' (no variable "
                                   "matches the pattern)")
            return found
        if pattern in vars:
            return [pattern]
        close = difflib.get_close_matches(pattern, list(vars), n=1)
        hint = f" (did you mean 'var#{close[0]}'?)" if close else ""
        self._problem(var, f"missing dependency 'var#{pattern}'{hint}")
        return []

    def _order(self, vars, deps) -> list[str] | None:
        sorter = TopologicalSorter()
        for name in vars:
            sorter.add(name, *deps[name])
        try:
            return list(sorter.static_order())
        except CycleError as e:
            cycle = e.args[1]
            self._problem(vars[cycle[0]], "these Variables have cyclical dependencies, which "
                                          f"is not allowed: {' -> '.join(cycle)}")
            return None

    def _check_names_and_titles(self, vars):
        by_lower: dict[str, str] = {}
        by_title: dict[str, list[str]] = {}
        for name, var in vars.items():
            other = by_lower.setdefault(name.lower(), name)
            if other != name:
                self._problem(var, f"the name differs from {other!r} only in case, but "
                                   "table columns ignore case")
            if isinstance(var.title, str):
                by_title.setdefault(var.title, []).append(name)
        for title, names in by_title.items():
            if len(names) > 1:
                self._problem(vars[names[1]], "these Variables have duplicate titles between "
                                              f"them: {', '.join(names)} (title {title!r})")

    def _promote(self, vars, deps, order):
        """DAMNIT's promotion: depending on proc data makes a variable proc (unless it
        says ``data="raw"``, which is an error), depending on a cluster variable makes it
        a cluster variable."""
        all_deps = {}
        for name in order:
            var = vars[name]
            found = set(deps[name])
            for dep in deps[name]:
                found |= all_deps[dep]
            all_deps[name] = found
            upstream = [d for d in order if d in found]
            if any(vars[d].cluster for d in upstream):
                var.cluster = True
            proc = [d for d in upstream if vars[d].data is RunData.PROC]
            if not proc:
                continue
            if var._data is None:
                var._data = RunData.PROC.value
            elif var.data is RunData.RAW:
                self._problem(var, "is triggered by migration of raw data (data='raw'), but "
                                   "depends on these Variables that require proc data: "
                                   f"{', '.join(proc)}\nRemove data='raw' for {name} or "
                                   "change it to data='proc'")

    # -- reporting ----------------------------------------------------------------------

    def _where(self, var: Variable) -> str:
        file, line = var.location()
        return f"{file or self.path}:{line}" if line else (file or self.path)

    def _problem(self, var: Variable, *messages: str):
        for message in messages:
            self.problems.append(f"{self._where(var)}: variable {var.name!r}: {message}")
