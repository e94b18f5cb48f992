"""Change event documents as an owner's relay sends them, valid, for tests to spoil.

``customer(n)`` and ``product(n)`` are valid upserts of key ``n``; ``changed``
replaces (or, with ``DROP``, removes) attributes, ``deletion`` makes the delete
of a document's key and ``text`` its JSON.
"""

from __future__ import annotations

import copy
import json
from typing import Any

CUSTOMER_QUEUE = "dev-orders--crm-customer-v1"
PRODUCT_QUEUE = "dev-orders--catalog-product-v1"
CUSTOMER_TOPIC = "arn:aws:sns:us-east-1:123456789012:dev-crm-customer-v1"
PRODUCT_TOPIC = "arn:aws:sns:us-east-1:123456789012:dev-catalog-product-v1"
BAD = 500
"""The key number of the record under test; the valid ones around it are 1 and 2."""
HUGE = 900 * 1024
"""A 900 KB string."""
DROP = object()
"""An attribute value meaning: leave the attribute out."""


def customer_key(n: int) -> str:
    return f"0b7c2a01-5d1e-4c6f-9a7b-{n:012d}"


def event_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def customer(n: int = BAD, **data: Any) -> dict[str, Any]:
    """A valid crm.customer upsert of key ``n``, with ``data`` fields replaced."""
    key = customer_key(n)
    fields: dict[str, Any] = {
        "id": key,
        "name": f"Customer {n}",
        "email": f"c{n}@example.com",
        "tier": "gold",
        "credit_limit": "1500.00",
        "created_at": "2026-01-02T03:04:05Z",
        "tags": ["b2b"],
        "address": {
            "street": "1 Main St",
            "city": "Lyon",
            "postal_code": "69001",
            "country": "FR",
        },
        "phone": None,
    }
    fields.update(data)
    return {
        "specversion": "1.0",
        "id": event_id(n),
        "source": "crm",
        "type": "crm.customer.upserted",
        "subject": key,
        "time": "2026-11-27T10:00:00.123456Z",
        "dataschema": "contract:crm.customer/v1",
        "datacontenttype": "application/json",
        "entityversion": 1,
        "data": fields,
    }


def product(n: int = BAD, **data: Any) -> dict[str, Any]:
    """A valid catalog.product upsert of SKU-``n``, with ``data`` fields replaced."""
    sku = f"SKU-{n}"
    fields: dict[str, Any] = {
        "sku": sku,
        "title": f"Product {n}",
        "price": "9.50",
        "active": True,
        "stock": 3,
    }
    fields.update(data)
    return {
        "specversion": "1.0",
        "id": event_id(10_000 + n),
        "source": "catalog",
        "type": "catalog.product.upserted",
        "subject": sku,
        "time": "2026-11-27T10:00:00Z",
        "dataschema": "contract:catalog.product/v1",
        "datacontenttype": "application/json",
        "entityversion": 1,
        "data": fields,
    }


def deletion(doc: dict[str, Any], version: int = 2) -> dict[str, Any]:
    """The delete of ``doc``'s key."""
    entity = doc["type"].rsplit(".", 1)[0]
    return changed(doc, type=f"{entity}.deleted", entityversion=version, data=None)


def changed(doc: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """A copy of ``doc`` with attributes replaced (``DROP``: removed)."""
    result = copy.deepcopy(doc)
    for name, value in attributes.items():
        if value is DROP:
            del result[name]
        else:
            result[name] = value
    return result


def text(doc: Any) -> str:
    return json.dumps(doc)
