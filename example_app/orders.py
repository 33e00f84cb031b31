"""The order API: a blueprint of JSON routes and JSON error answers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from flask_observe import counted

from .checkout import CheckoutError, LineItem, OrderRequest, process_order
from .jobs import JobQueue, notify_warehouse
from .models import Database, Order
from .settings import Settings

__all__ = ["InvalidOrder", "bp", "parse_order"]

bp = Blueprint("orders", __name__)

MAX_ITEMS = 50
MAX_QUANTITY = 999
MAX_SKU_LENGTH = 64
MAX_USER_ID = 2**31 - 1
MAX_TOTAL_CENTS = 100_000_000
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class InvalidOrder(ValueError):
    """The body of ``POST /orders`` is not a valid order; the message says why."""


def _error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error=code, message=message), status


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOrder(f"{name} must be an integer from {low} to {high}")
    return value


@counted
def parse_order(data: Any) -> OrderRequest:
    """Check a ``POST /orders`` body and turn it into an :class:`OrderRequest`.

    :raises InvalidOrder: naming the first field that is wrong.
    """
    if not isinstance(data, dict):
        raise InvalidOrder("the body must be a JSON object")
    user_id = _int(data.get("user_id"), "user_id", 1, MAX_USER_ID)
    items = data.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidOrder(f"items must be a list of 1 to {MAX_ITEMS} items")
    lines = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidOrder(f"items[{index}] must be an object with a sku and a quantity")
        sku = item.get("sku")
        if not isinstance(sku, str) or not 1 <= len(sku) <= MAX_SKU_LENGTH:
            raise InvalidOrder(f"items[{index}].sku must be a string of 1 to 64 characters")
        quantity = _int(item.get("quantity"), f"items[{index}].quantity", 1, MAX_QUANTITY)
        lines.append(LineItem(sku=sku, quantity=quantity))
    total_cents = _int(data.get("total_cents"), "total_cents", 0, MAX_TOTAL_CENTS)
    return OrderRequest(user_id=user_id, items=tuple(lines), total_cents=total_cents)


def _settings() -> Settings:
    settings: Settings = current_app.extensions["example_app"].settings
    return settings


def _jobs() -> JobQueue:
    jobs: JobQueue = current_app.extensions["example_app"].jobs
    return jobs


def _database() -> Database:
    database: Database = current_app.extensions["example_app"].database
    return database


@bp.get("/")
def index() -> Response:
    """A map of the service: what to call, and where the metrics and health are."""
    links = {
        "create_order": "POST " + url_for(".create_order"),
        "list_orders": "GET " + url_for(".list_orders") + f"?limit={DEFAULT_LIMIT}",
        "get_order": "GET " + url_for(".list_orders") + "/<order_id>",
    }
    metrics_path = current_app.config.get("OBSERVE_METRICS_PATH")
    if metrics_path:
        links["metrics"] = "GET " + metrics_path
    if current_app.config.get("OBSERVE_HEALTH_ENABLED"):
        links["health"] = "GET " + current_app.config["OBSERVE_HEALTH_PATH"]
    return jsonify(service=current_app.config["OBSERVE_SERVICE_NAME"], links=links)


@bp.post("/orders")
def create_order() -> Any:
    """Check out an order: 201 with the order, or the status of the step that refused it."""
    try:
        order_request = parse_order(request.get_json(silent=True))
    except InvalidOrder as exc:
        return _error(400, "invalid_order", str(exc))
    order = process_order(_database().session(), order_request, _settings().checkout)
    # After the answer is decided, not before: the client does not wait for the warehouse.
    _jobs().submit(notify_warehouse, order.id, len(order.items), _settings().warehouse_delay)
    location = url_for(".get_order", order_id=order.id)
    return jsonify(order.to_dict()), 201, {"Location": location}


@bp.get("/orders/<int:order_id>")
def get_order(order_id: int) -> Any:
    """One order, or 404."""
    order = _database().session().get(Order, order_id)
    if order is None:
        return _error(404, "not_found", f"there is no order {order_id}")
    return jsonify(order.to_dict())


@bp.get("/orders")
def list_orders() -> Any:
    """The latest orders, newest first; ``?limit=`` from 1 to 100, default 20."""
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    query = select(Order).order_by(Order.id.desc()).limit(limit)
    orders = _database().session().scalars(query).all()
    return jsonify(orders=[order.to_dict() for order in orders], limit=limit)


@bp.app_errorhandler(CheckoutError)
def checkout_failed(exc: CheckoutError) -> Any:
    """A step refused the order: its status, and why."""
    return _error(exc.status, exc.code, str(exc))


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Any:
    """Every HTTP error as JSON, including unknown paths and unhandled exceptions (500)."""
    response = exc.get_response()
    response.data = jsonify(
        error=(exc.name or "error").lower().replace(" ", "_"), message=exc.description
    ).get_data()
    response.content_type = "application/json"
    return response
