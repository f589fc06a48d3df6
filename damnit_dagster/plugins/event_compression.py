"""Event records stored deflated against a dictionary of typical events, read back as JSON.

A stored value's materialisation is about 2 KB of JSON, kept twice (the run's log and the
index), and most of it is the same class names, field names and step names in every
event. Deflated against a preset dictionary of typical events (``event_dictionary_1.txt``:
a materialisation, a planned one, a failed check, a planned check and a log line) it
takes a small fraction of that (``benchmarks/results.md``, bytes per value).

The event log storage stores the records it writes in batches (a step's materialisations,
checks and log lines, a new run's planned events) with :func:`compress`: a BLOB starting
with a format prefix, which no JSON text (stored as TEXT) can be. Every connection of the
storage reads such values back as the JSON text Dagster wrote (:func:`expand_row` is its
SQLite row factory), so Dagster's queries, the webserver and the daemon see the events
they would have seen without it. A record can only be read with the dictionary it was
written with: a new dictionary needs a new prefix, and the old one stays for reading.
"""
from __future__ import annotations

import zlib
from importlib.resources import files

#: Raw deflate (no zlib header) with a 16 KiB window, which covers the dictionary and an event.
WINDOW_BITS = -14
#: Deflate's level and memory level: as small as the higher settings, and quicker.
LEVEL, MEMORY_LEVEL = 6, 8
#: The prefix (and so the dictionary) :func:`compress` writes.
PREFIX = b"\x00\x01"
#: The prefix of a compressed record, by the dictionary it was compressed with.
DICTIONARIES = {
    PREFIX: files(__package__).joinpath("event_dictionary_1.txt").read_bytes(),
}

_primed = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS, MEMORY_LEVEL,
                           zlib.Z_DEFAULT_STRATEGY, DICTIONARIES[PREFIX])


def compress(text: str) -> bytes:
    """``text`` (an event's JSON) as a compressed record."""
    compressor = _primed.copy()   # priming with the dictionary costs more than copying
    return PREFIX + compressor.compress(text.encode()) + compressor.flush()


def stored_row(row: dict) -> dict:
    """An ``event_logs`` row (Dagster's ``_event_to_row``) as stored: its event compressed."""
    return {**row, "event": compress(row["event"])}


def expand(value):
    """The JSON text of a compressed record; any other value as it is."""
    if type(value) is not bytes or value[:2] not in DICTIONARIES:
        return value
    expander = zlib.decompressobj(WINDOW_BITS, zdict=DICTIONARIES[value[:2]])
    return (expander.decompress(value[2:]) + expander.flush()).decode()


def expand_row(_cursor, row: tuple) -> tuple:
    """An SQLite row factory: ``row`` with its compressed records expanded."""
    for value in row:
        if type(value) is bytes:
            return tuple(expand(v) for v in row)
    return row
