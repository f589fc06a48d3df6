"""The architecture stays as docs/architecture.md draws it: the layers and
independence contracts of pyproject.toml hold (import-linter), ruff is clean, modules stay
small, and every module has its line in the map."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("context_loader", "damnit_dagster")
#: A module longer than this wants splitting by concept.
MAX_LINES = 450


def sources():
    for folder in (*PACKAGES, "tests", "benchmarks"):
        yield from (p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold():
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_is_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_source_file_is_too_long():
    too_long = {str(p.relative_to(REPO)): n for p in sources()
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_every_module_has_its_line_in_the_architecture_doc():
    doc = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"^\| `([\w/]+\.py)` \|", doc, re.M))
    modules = {str(p.relative_to(REPO / package)).replace("\\", "/")
               for package in PACKAGES for p in (REPO / package).rglob("*.py")
               if "__pycache__" not in p.parts and "templates" not in p.parts
               and p.name != "__init__.py"}
    assert modules - named == set(), "modules without a line in docs/architecture.md"
    assert named - modules == set(), "lines of docs/architecture.md naming no module"


def test_the_dagster_side_does_not_load_the_science_stack():
    """The webserver, the daemon, the code server and every command load the code
    location without xarray or pandas (seconds of start-up and tens of MB per process);
    only the processes that evaluate runs or read values back load them."""
    code = ("import sys, damnit_dagster.defs.definitions, damnit_dagster.ops.cli, "
            "damnit_dagster.reprocess.direct, damnit_dagster.plugins.launcher; "
            "print(sorted(m for m in ('xarray', 'pandas', 'extra_data', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
