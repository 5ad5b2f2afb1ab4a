"""The result log's schema migrations (Alembic), run by station.core.database when a database is opened.

To change the table: edit InspectionRow (station/core/result_rows.py) and add one file under versions/
whose down_revision is the newest one here; tests/test_database.py fails while the two disagree.
"""
