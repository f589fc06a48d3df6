"""Helpers shared by the tests, importable as ``support.<module>`` (pytest puts ``tests/`` on
``sys.path`` through ``pythonpath`` in ``pyproject.toml``).

- :mod:`support.damnit_mock_context`: DAMNIT's own test context.
- :mod:`support.kafka_broker`: a Kafka broker (nafka) and a producer for the event tests.
- :mod:`support.paths`: where the repository, the test data and these helpers are.
- :mod:`support.folders`: a new DAMNIT folder with a given context and settings.
- :mod:`support.backend`: a real Dagster daemon (and webserver) serving a DAMNIT folder.
- :mod:`support.nafka_server`: a Kafka broker for the event tests (run as a script).
- :mod:`support.reprocess_context`: the reprocessing tests' context and what it must give.
- :mod:`support.spec_examples`: code examples of the spec used by several test modules.
- :mod:`support.storage_fragments`: fragments of every return type for the storage tests.
"""
