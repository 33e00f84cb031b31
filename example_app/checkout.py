"""The checkout: :func:`process_order` and the steps it runs, each one timed and traced.

The steps stand in for calls to other services (identity, inventory, payments, email): each
sleeps for its configured delay, give or take half of it, and fails at its configured rate.
The inventory step calls a real service over HTTP instead when ``EXAMPLE_INVENTORY_URL`` is
set (:mod:`example_app.inventory`): flask-observe observes the call, so the order's trace
goes on in that service, and the call is counted by peer.
Every function here is decorated with :func:`flask_observe.timed`, so
``app_function_duration_seconds`` shows which step is slow and which one fails, and with
:func:`flask_observe.traced`, so each order's trace shows the steps as spans under the
request's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import requests
from sqlalchemy.orm import Session

from flask_observe import get_logger, timed, traced

from .models import Order, OrderItem, utcnow
from .settings import Checkout, Step

__all__ = [
    "AuthenticationFailed",
    "CheckoutError",
    "EmailFailed",
    "InventoryUnavailable",
    "LineItem",
    "OrderRequest",
    "OutOfStock",
    "PaymentDeclined",
    "SimulatedBug",
    "authenticate",
    "check_inventory",
    "process_order",
    "process_payment",
    "send_email",
]

_log = get_logger(__name__)


class CheckoutError(Exception):
    """A checkout step refused the order; the API answers with :attr:`status`."""

    #: The HTTP status of the answer.
    status = 500
    #: The ``error`` field of the answer's JSON body.
    code = "checkout_failed"


class AuthenticationFailed(CheckoutError):
    """The user could not be authenticated."""

    status = 401
    code = "authentication_failed"


class OutOfStock(CheckoutError):
    """An item of the order is not in stock."""

    status = 409
    code = "out_of_stock"


class PaymentDeclined(CheckoutError):
    """The payment was declined."""

    status = 402
    code = "payment_declined"


class InventoryUnavailable(CheckoutError):
    """The inventory service did not answer, or failed."""

    status = 503
    code = "inventory_unavailable"


class EmailFailed(Exception):
    """The confirmation email could not be sent; the order stands all the same."""


class SimulatedBug(RuntimeError):
    """An error nobody planned for, raised on purpose at ``EXAMPLE_BUG_RATE``.

    Nothing handles it, so the request ends in a 500, and flask-observe counts it in
    ``http_request_exceptions_total{exception="SimulatedBug"}``.
    """


@dataclass(frozen=True)
class LineItem:
    """One product of an order request."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderRequest:
    """A validated ``POST /orders`` body."""

    user_id: int
    items: tuple[LineItem, ...]
    total_cents: int


def _call(step: Step) -> bool:
    """Spend the step's time; True if this call is one that fails.

    Each call logs a ``checkout_step`` line naming the step, with its duration: written
    inside the step's span, it carries the trace and span IDs, so the lines of a slow
    order's trace say which step took the time.
    """
    start = time.perf_counter()
    if step.delay > 0:
        time.sleep(step.delay * random.uniform(0.5, 1.5))
    failed = step.failure_rate > 0 and random.random() < step.failure_rate
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    _log.info("checkout_step", step=step.name, duration_ms=duration_ms, failed=failed)
    return failed


@traced(attributes={"user.id": "user_id"})
@timed
def authenticate(user_id: int, step: Step) -> None:
    """Check the user's session with the identity service.

    :raises AuthenticationFailed: at the step's failure rate.
    """
    if _call(step):
        raise AuthenticationFailed(f"user {user_id} could not be authenticated")


#: Seconds the inventory service may take to answer.
INVENTORY_TIMEOUT = 10.0


def _reserve(url: str, items: Sequence[LineItem]) -> bool:
    """Reserve *items* with the inventory service at *url*; True if it refused one.

    Logs the ``checkout_step`` line as :func:`_call` does, with the call's duration.
    """
    body = {"items": [{"sku": item.sku, "quantity": item.quantity} for item in items]}
    start = time.perf_counter()
    try:
        response = requests.post(f"{url}/reservations", json=body, timeout=INVENTORY_TIMEOUT)
    except requests.RequestException as exc:
        raise InventoryUnavailable(f"the inventory service did not answer: {exc}") from exc
    failed = response.status_code == 409
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    _log.info("checkout_step", step="check_inventory", duration_ms=duration_ms, failed=failed)
    if not failed and response.status_code != 200:
        raise InventoryUnavailable(f"the inventory service answered {response.status_code}")
    return failed


@traced(attributes={"order.items": lambda items, step, url=None: len(items)})
@timed
def check_inventory(items: Sequence[LineItem], step: Step, url: Optional[str] = None) -> None:
    """Reserve the items with the inventory service: the slow step of the checkout.

    :param url: the inventory service's base URL; ``None`` simulates it with *step*.
    :raises OutOfStock: at the step's failure rate.
    :raises InventoryUnavailable: when the service at *url* fails or does not answer.
    """
    if _reserve(url, items) if url is not None else _call(step):
        sku = random.choice(items).sku
        raise OutOfStock(f"{sku} is out of stock")


@traced(attributes={"order.total_cents": "total_cents"})
@timed
def process_payment(user_id: int, total_cents: int, step: Step) -> None:
    """Charge the user's card with the payment service.

    :raises PaymentDeclined: at the step's failure rate.
    """
    if _call(step):
        raise PaymentDeclined(f"the payment of {total_cents} cents by user {user_id} was declined")


@traced(attributes={"order.id": "order_id"})
@timed
def send_email(user_id: int, order_id: int, step: Step) -> None:
    """Send the order confirmation to the user.

    :raises EmailFailed: at the step's failure rate.
    """
    if _call(step):
        raise EmailFailed(f"the confirmation of order {order_id} to user {user_id} bounced")


@traced(attributes={"user.id": lambda session, request, checkout: request.user_id})
@timed
def process_order(session: Session, request: OrderRequest, checkout: Checkout) -> Order:
    """Run the checkout steps in order, store the order, and send its confirmation.

    A failed email is logged and does not fail the order, which is already paid for.

    :param session: the request's database session; the order is committed in it.
    :param request: the validated order.
    :param checkout: how each step behaves.
    :raises CheckoutError: if authentication, inventory or payment refuse the order.
    :raises SimulatedBug: at ``checkout.bug_rate``.
    """
    authenticate(request.user_id, checkout.authenticate)
    check_inventory(request.items, checkout.check_inventory, checkout.inventory_url)
    process_payment(request.user_id, request.total_cents, checkout.process_payment)
    if checkout.bug_rate > 0 and random.random() < checkout.bug_rate:
        raise SimulatedBug("the order total no longer matches the payment")
    order = Order(
        user_id=request.user_id,
        total_cents=request.total_cents,
        status="confirmed",
        created_at=utcnow(),
        items=[OrderItem(sku=item.sku, quantity=item.quantity) for item in request.items],
    )
    session.add(order)
    session.commit()
    _log.info(
        "order_created",
        order_id=order.id,
        user_id=request.user_id,
        total_cents=request.total_cents,
    )
    try:
        send_email(request.user_id, order.id, checkout.send_email)
    except EmailFailed as exc:
        _log.warning("order_email_failed", order_id=order.id, error=str(exc))
    return order
