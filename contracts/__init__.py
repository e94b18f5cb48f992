"""Contracts of the example business lines; importing this package registers them."""

from contracts.catalog import Product
from contracts.crm import Address, Customer, Tier

__all__ = ["Address", "Customer", "Product", "Tier"]
