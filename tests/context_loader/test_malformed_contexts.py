"""Every file in malformed_contexts/ fails to load with one clear error.

The first line of each file says what the user must see: ``# expect: <start of the
error>``, which names the file, the line and (where there is one) the variable.
"""
import re

import pytest

from context_loader.contextfile import ContextFile
from context_loader.errors import ContextFileErrors
from support.paths import MALFORMED_CONTEXTS

CASES = sorted(MALFORMED_CONTEXTS.glob("*.py"))


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_one_clear_error(case):
    code = case.read_text()
    expected = re.match(r"# expect: (.+)\n", code).group(1)
    path = f"malformed_contexts/{case.name}"
    with pytest.raises(ContextFileErrors) as e:
        ContextFile.from_str(code, path)
    err = e.value
    assert len(err.problems) == 1, err.problems
    assert err.problems[0].startswith(expected)
    assert err.path == path
    # Tracebacks show the user's code only, never our internals.
    assert "context_loader" not in str(err)
    assert all(f'File "{path}"' in line
               for line in str(err).splitlines() if line.strip().startswith("File "))


def test_traceback_of_an_error_in_top_level_code_shows_the_users_lines():
    case = MALFORMED_CONTEXTS / "error_in_helper.py"
    with pytest.raises(ContextFileErrors) as e:
        ContextFile.from_str(case.read_text(), "error_in_helper.py")
    # (leaving out the lines of carets that mark the failing expression)
    lines = [line for line in str(e.value).splitlines() if set(line) - set(" ^~")]
    assert lines[0] == ("error_in_helper.py:6: error while running the context file: "
                        "KeyError: 'SA3'")
    assert lines[1:] == [
        "Traceback (most recent call last):",
        '  File "error_in_helper.py", line 8, in <module>',
        '    XGM = device("SA3")',
        '  File "error_in_helper.py", line 6, in device',
        "    return DEVICES[beamline]",
        "KeyError: 'SA3'",
    ]


def test_syntax_error_shows_the_line_and_caret():
    with pytest.raises(ContextFileErrors) as e:
        ContextFile.from_str((MALFORMED_CONTEXTS / "syntax_error.py").read_text(),
                             "context.py")
    assert str(e.value).splitlines() == [
        "context.py:5: SyntaxError: expected ':'",
        "    def foo(run)",
        "                ^",
    ]


def test_loading_from_a_path_names_that_path(tmp_path):
    path = tmp_path / "context.py"
    path.write_text((MALFORMED_CONTEXTS / "missing_dependency.py").read_text())
    with pytest.raises(ContextFileErrors) as e:
        ContextFile.from_path(path)
    assert str(e.value) == (f"{path}:8: variable 'bar': missing dependency 'var#fooo' "
                            "(did you mean 'var#foo'?)")
