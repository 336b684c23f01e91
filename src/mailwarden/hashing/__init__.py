"""Password hashing off the event loop: the pool (pool.py), the worker process
(worker.py, ``python -m mailwarden.hashing.worker``) and the frames between them
(frames.py, sans-I/O).
"""
