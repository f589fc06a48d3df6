"""DAMNIT's ``runs.sqlite`` schema: the statements of its migrations 1-4
(``damnit/backend/db_migrations.py``), statement by statement, so that ``sqlite_master``
is identical to a database DAMNIT made."""
from __future__ import annotations

SCHEMA_VERSION = 4
MIN_OPENABLE_VERSION = 1

# DAMNIT's migrations (damnit/backend/db_migrations.py), statement by statement.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS run_info(proposal, run, start_time, added_at)",
        "CREATE UNIQUE INDEX IF NOT EXISTS proposal_run ON run_info (proposal, run)",
        "CREATE TABLE IF NOT EXISTS run_variables(proposal, run, name, version, value,"
        " timestamp, max_diff, provenance, summary_type, summary_method)",
        "CREATE UNIQUE INDEX IF NOT EXISTS variable_version"
        " ON run_variables (proposal, run, name, version)",
        "CREATE VIEW IF NOT EXISTS runs AS SELECT * FROM run_info",
        "CREATE VIEW IF NOT EXISTS max_diffs AS SELECT proposal, run FROM run_info",
        "CREATE TABLE IF NOT EXISTS metameta(key PRIMARY KEY NOT NULL, value)",
        "CREATE TABLE IF NOT EXISTS variables(name TEXT PRIMARY KEY NOT NULL, type TEXT,"
        " title TEXT, description TEXT, attributes TEXT)",
        "CREATE TABLE IF NOT EXISTS time_comments(timestamp, comment)",
    ),
    2: ("ALTER TABLE run_variables ADD COLUMN attributes",),
    3: (
        "CREATE TABLE IF NOT EXISTS tags(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT UNIQUE NOT NULL)",
        "CREATE TABLE IF NOT EXISTS variable_tags(variable_name TEXT NOT NULL,"
        " tag_id INTEGER NOT NULL,"
        " FOREIGN KEY (variable_name) REFERENCES variables(name) ON DELETE CASCADE,"
        " FOREIGN KEY (tag_id) REFERENCES tags(id) ON DELETE CASCADE,"
        " PRIMARY KEY (variable_name, tag_id))",
    ),
    4: (
        "CREATE TRIGGER IF NOT EXISTS delete_orphan_tags_after_variable_tag_delete"
        " AFTER DELETE ON variable_tags FOR EACH ROW BEGIN"
        " DELETE FROM tags WHERE id = OLD.tag_id"
        " AND NOT EXISTS (SELECT 1 FROM variable_tags WHERE tag_id = OLD.tag_id); END",
    ),
}
