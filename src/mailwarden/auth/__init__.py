"""The login decision: the engine (engine.py), the only place where a login is decided,
orchestrating the password context (passwords.py: verify, dummy verify, challenge-response
credentials, rehash) and the access policy (access.py: status, service switches,
networks, master users, anonymous, nodelay, passdb and proxy fields); username
normalisation (usernames.py); dummy verifications for unknown names (dummies.py).
"""
