"""Exceptions of context files: the ones users raise or see, with DAMNIT 0.4.0's texts."""
from __future__ import annotations


class Skip(Exception):
    """Raise in a Variable to skip it for this run; the message is shown to users."""


class GroupError(Exception):
    """A ``@Group`` is defined or instantiated in a way that cannot be expanded."""


class DependencyError(RuntimeError):
    """A variable was not run because dependencies without defaults have no result.

    ``dep_errors`` is a list of ``(name, exception)``; ``str()`` is DAMNIT's tree::

        Skipped due to missing dependency:
        ├ (var5) failed: NotImplementedError
        └ (var6) skipped
           └ (var3) failed: ZeroDivisionError: division by zero
    """

    def __init__(self, dep_errors):
        self.dep_errors = list(dep_errors)
        super().__init__(format_dependency_errors(self.dep_errors))


class ContextFileErrors(RuntimeError):
    """Every problem found while loading a context file; each names file, line, variable."""

    def __init__(self, problems, path=None):
        self.problems = list(problems)
        self.path = path
        super().__init__(self.problems)

    def __str__(self):
        return "\n".join(self.problems)


def format_dependency_errors(dep_errors) -> str:
    """DAMNIT's text for a list of ``(dependency name, exception)``."""
    lines = ["Skipped due to missing dependency:"]
    lines += _tree_lines(dep_errors, "")
    return "\n".join(lines)


def _tree_lines(dep_errors, prefix):
    lines = []
    for i, (name, exc) in enumerate(dep_errors):
        last = i == len(dep_errors) - 1
        head = prefix + ("└ " if last else "├ ")
        child_prefix = prefix + ("   " if last else "│  ")
        if isinstance(exc, DependencyError):
            lines.append(f"{head}({name}) skipped")
            if exc.dep_errors:
                lines += _tree_lines(exc.dep_errors, child_prefix)
            else:
                lines.append(f"{child_prefix}<no details>")
            continue
        msg_lines = str(exc).splitlines()
        if not msg_lines:
            lines.append(f"{head}({name}) failed: {type(exc).__name__}")
            continue
        lines.append(f"{head}({name}) failed: {type(exc).__name__}: {msg_lines[0]}")
        lines += [child_prefix + line for line in msg_lines[1:]]
    return lines
