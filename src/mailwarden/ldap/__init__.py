"""Data files for LDAP: OpenLDAP cn=config schemas (qmail.ldif, mailwarden.ldif).

See docs/ldap.md for how to load them.
"""
