"""The login decision: the engine (engine.py), the only place where a login is decided;
username normalisation (usernames.py); dummy verifications for unknown names (dummies.py).
"""
