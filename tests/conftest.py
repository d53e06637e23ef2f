"""Fixtures every test folder may use: the real servers of :mod:`fixtures_servers`."""

pytest_plugins = ["fixtures_servers"]
