"""Databases, caches and FTP servers read from their own configuration (issue 10).

One module per service (``redis``, ``mysql``, ``postgres``, ``mongodb``, ``memcached``, ``elasticsearch``,
``ftp``), each declaring a fact whose value is the effective configuration with a ``listening`` and an
``auth`` summary (:mod:`hostguard.host.services.common`), or None when the service is not installed.
Nothing is read at import time.
"""
