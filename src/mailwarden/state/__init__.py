"""mailwarden's own state store (administrators, API tokens, second factors, the
audit log): the protocol and values in :mod:`.base`, a store in memory
(:mod:`.memory`) and one in an SQLite file (:mod:`.sqlite`). Only app.py and cli/
pick one; docs/architecture.md ("The state store") says why these records are not
kept in the account directory."""
