"""SQLAlchemy 2 async models and the engine/session factory (SQLite or PostgreSQL)."""

from sluice.db.engine import create_engine, session_factory
from sluice.db.models import (
    Account,
    AccountToken,
    Action,
    Base,
    DataPoint,
    Device,
    DeviceParam,
    DeviceToken,
    Plan,
)

__all__ = [
    "Account",
    "AccountToken",
    "Action",
    "Base",
    "DataPoint",
    "Device",
    "DeviceParam",
    "DeviceToken",
    "Plan",
    "create_engine",
    "session_factory",
]
