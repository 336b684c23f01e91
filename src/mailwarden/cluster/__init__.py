"""Cluster forwarding: logging in on a user's mail host (mailproxy.py, sans-I/O) and
relaying the session (relay.py).
"""
