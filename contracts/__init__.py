"""The wire contract of each import kind: fields, types and the pandera schema. Pure: no I/O."""

from contracts import catalog, demand_history, inventory, orders, purchase_orders, suppliers
from contracts.common import Contract

CONTRACTS: dict[str, Contract] = {
    module.CONTRACT.kind: module.CONTRACT
    for module in (catalog, inventory, suppliers, purchase_orders, orders, demand_history)
}

__all__ = ["CONTRACTS", "Contract"]
