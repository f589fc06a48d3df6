"""Start nafka (a small Kafka broker) on 127.0.0.1 under Python 3.11.

nafka 0.1 calls ``sqlite3.connect(autocommit=True)``, an argument of Python 3.12+;
``isolation_level=None`` is the 3.11 equivalent (nafka issues BEGIN IMMEDIATE itself).
Usage: python nafka_server.py --file F --port P
"""
import sqlite3
import sys

_connect = sqlite3.connect


def _connect_311(*args, autocommit=None, **kwargs):
    if autocommit:
        kwargs.setdefault("isolation_level", None)
    return _connect(*args, **kwargs)


if __name__ == "__main__":
    sqlite3.connect = _connect_311
    from nafka.server import main
    sys.exit(main())
