"""Front ends: thin asyncio adapters between sockets and the engine.

Each front end owns its listeners and connections and nothing else: it reads bytes,
hands them to a sans-I/O codec from :mod:`mailwarden.protocols` (and SASL
mechanisms from :mod:`mailwarden.sasl`), asks the :class:`~mailwarden.auth.engine.Engine`
for every decision, and writes the codec's reply bytes. Policy lives in the engine;
wire formats live in the codecs. What belongs here is what needs the event loop:
sockets and their permissions, concurrency of requests, delays and timeouts, and
keeping one broken connection from affecting the others.

Front ends never import :mod:`mailwarden.directories` or any store (a test walks
the imports); ``app.py`` builds the engine and starts them.

* :mod:`~mailwarden.frontends.dovecot` - Dovecot's auth protocol (Postfix, Exim,
  doveadm, Dovecot login processes): listeners and :func:`start_dovecot`;
  :mod:`~mailwarden.frontends.dovecot_client` and
  :mod:`~mailwarden.frontends.dovecot_master` serve the two kinds of socket.
"""
