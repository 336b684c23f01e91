"""mailwarden's own state store (administrators, API tokens, second factors, the
audit log): the protocol and values in :mod:`.base`, a store in memory
(:mod:`.memory`), one in an SQLite file (:mod:`.sqlite`) and one in PostgreSQL or
MariaDB for several hosts (:mod:`.sql`, tables in :mod:`.sqlschema`). Only app.py
and cli/ pick one (through :mod:`.opening`); docs/architecture.md ("The state
store") says why these records are not kept in the account directory."""
