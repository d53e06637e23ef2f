"""The integration tests talk to real servers; their fixtures live in ``tests/fixtures_servers.py``
(loaded for the whole suite by ``tests/conftest.py``). Its classes can be imported from here too."""

from fixtures_servers import RedisServer, S3Server, free_port

__all__ = ["RedisServer", "S3Server", "free_port"]
