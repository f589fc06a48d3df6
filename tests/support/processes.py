"""Processes the tests look at."""
import os


def process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
