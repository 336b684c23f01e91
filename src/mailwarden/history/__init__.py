"""Login history: each account's recent logins, recorded off the login path
(docs/history.md). base.py: the values and the store protocol (pure);
recorder.py: the bounded queue and its background writer; memory.py and redis.py:
stores (the SQLite and SQL state stores keep it too)."""
