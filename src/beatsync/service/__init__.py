"""The BeatSync web service: configuration, database, storage, jobs and the HTTP API.

``create_app(settings)`` (in :mod:`beatsync.service.api.app`) builds the FastAPI application;
nothing is constructed at import time. The engine below knows nothing of this package.
"""
