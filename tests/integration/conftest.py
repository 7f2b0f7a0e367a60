"""The API test client over a real database, shared by the API test modules.

A module that uses them defines ``served_settings`` (the settings the app is made from; depend on
whatever must exist first, such as a stored run) and ``key_prefix`` (the name of its API keys:
``<prefix>-viewer``, ``-operator``, ``-admin``). A module's own fixture of the same name wins.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from genesis.adapters.db import Repository
from genesis.adapters.db.apikeys import ApiKeyStore
from genesis.api import create_app
from genesis.config import Settings


@pytest.fixture(scope="module")
def repo(served_settings: Settings) -> Iterator[Repository]:
    with Repository(served_settings.database_url) as r:
        yield r


@pytest.fixture(scope="module")
def keys(repo: Repository, key_prefix: str) -> dict[str, str]:
    """A key of each role, by role."""
    store = ApiKeyStore(repo.engine)
    return {role: store.create(role, f"{key_prefix}-{role}")[0] for role in ("viewer", "operator", "admin")}


@pytest.fixture(scope="module")
def app(served_settings: Settings, repo: Repository) -> FastAPI:
    return create_app(served_settings)


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
