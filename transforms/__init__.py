"""Pure frame -> frame steps from validated rows to what the warehouse merges. No I/O."""

from collections.abc import Callable

from contracts.common import Validated
from transforms.catalog import prepare_catalog
from transforms.common import Prepared
from transforms.demand_history import prepare_demand_history
from transforms.inventory import prepare_inventory
from transforms.orders import prepare_orders
from transforms.purchase_orders import prepare_purchase_orders
from transforms.suppliers import prepare_suppliers

Preparer = Callable[[Validated, str], Prepared]

PREPARERS: dict[str, Preparer] = {
    "catalog": prepare_catalog,
    "inventory": prepare_inventory,
    "suppliers": prepare_suppliers,
    "purchase-orders": prepare_purchase_orders,
    "orders": prepare_orders,
    "demand-history": prepare_demand_history,
}

__all__ = ["PREPARERS", "Prepared", "Preparer"]
