"""The orders database: two tables, an engine per app, a session per request."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from flask import g
from sqlalchemy import DateTime, ForeignKey, String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

__all__ = ["Base", "Database", "Order", "OrderItem"]

#: Where the request's session is kept in :data:`flask.g`.
_SESSION_KEY = "example_app_session"


class Base(DeclarativeBase):
    """The declarative base of the example's tables."""


class Order(Base):
    """A confirmed order."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(index=True)
    total_cents: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))
    #: When the order was confirmed, in UTC (stored without a zone: SQLite keeps none).
    created_at: Mapped[datetime] = mapped_column(DateTime)
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="OrderItem.id",
    )

    def to_dict(self) -> dict[str, Any]:
        """The order as the API shows it."""
        created = self.created_at.replace(tzinfo=timezone.utc)
        return {
            "id": self.id,
            "user_id": self.user_id,
            "items": [{"sku": item.sku, "quantity": item.quantity} for item in self.items],
            "total_cents": self.total_cents,
            "status": self.status,
            "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


class OrderItem(Base):
    """One line of an order: a product and how many of it."""

    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int]
    order: Mapped[Order] = relationship(back_populates="items")


def utcnow() -> datetime:
    """The current time in UTC, without a zone, as the ``created_at`` column stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Database:
    """One app's engine and session factory.

    The engine's pool is shared by the server's threads; each request gets its own session
    from :meth:`session`, closed by :meth:`remove_session` when the app context ends.
    """

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        """Create the tables that do not exist yet."""
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError:
            # gunicorn's workers start together, each making its app: another may have
            # created a table between this one's check and its CREATE. Checked again, the
            # tables exist, and nothing is created; any other failure is raised again.
            Base.metadata.create_all(self.engine)

    def session(self) -> Session:
        """The current request's session, opened on first use."""
        session: Optional[Session] = g.get(_SESSION_KEY)
        if session is None:
            session = self._sessions()
            setattr(g, _SESSION_KEY, session)
        return session

    def remove_session(self, exc: Optional[BaseException] = None) -> None:
        """Close the request's session, if it opened one; uncommitted work is rolled back."""
        session: Optional[Session] = g.pop(_SESSION_KEY, None)
        if session is not None:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection (when the app is done with, as in tests)."""
        self.engine.dispose()
