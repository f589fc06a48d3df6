"""The README's "Using it" block, as a newcomer meets it in a fresh shell: its first line
makes the commands it uses available."""
import re
import subprocess

from support.paths import REPO


def using_it_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Using it\n.*?```bash\n(.*?)```", text, re.S)[1]
    return [line.split("#")[0].strip() for line in block.splitlines()]


def test_the_using_it_block_finds_its_commands_in_a_fresh_shell():
    lines = using_it_block()
    assert lines[0] == "source .venv/bin/activate"
    used = {line.split()[0] for line in lines[1:] if line and line.split()[0] != "cd"}
    assert used == {"damnit-dagster", "supervisorctl"}
    script = f"{lines[0]} && damnit-dagster --help && command -v supervisorctl"
    result = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "bash", "--norc", "-c", script],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage: damnit-dagster" in result.stdout
