"""The whole schema in one ``MetaData``: the core tables of ``tables`` plus every feature's tables.

Feature modules declare their tables on the shared ``Base`` in their own ``tables_*`` module;
importing this module registers them all. Alembic's ``env.py`` and the test that compares the
migrations with the models use ``metadata`` from here, so a new feature adds one import here.
"""

from __future__ import annotations

from genesis.adapters.db import tables_alerts, tables_analytics, tables_api, tables_identities
from genesis.adapters.db.tables import Base

FEATURE_MODELS = (tables_alerts, tables_analytics, tables_api, tables_identities)
metadata = Base.metadata

__all__ = ["FEATURE_MODELS", "metadata"]
