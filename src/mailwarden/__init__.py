"""mailwarden: one authentication and account service for a whole mail system.

The package is split by layer (see docs/architecture.md): pure value types,
schemes and protocol cores that do no I/O, directories that do, the one
:class:`~mailwarden.auth.engine.Engine` that holds all policy, and thin front ends.
"""

__version__ = "0.1.0"
