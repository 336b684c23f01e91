"""Brute-force protection: the policy (policy.py), the verified-login and negative caches
(logincache.py) and where the guard's state lives (stores/).
"""
