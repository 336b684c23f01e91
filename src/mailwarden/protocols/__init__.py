"""Sans-I/O protocol codecs: bytes in, events out, replies as bytes. No asyncio, no sockets.

Each module is one wire protocol; the asyncio adapters in ``mailwarden.frontends``
own the sockets and call the engine.
"""
