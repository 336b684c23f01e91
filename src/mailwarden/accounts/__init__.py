"""The one set of account rules (rules.py), account editing for the CLI, the admin API,
the web page and the mail gateway (edit.py), and Dovecot passwd-files (passwdfile.py).
"""
