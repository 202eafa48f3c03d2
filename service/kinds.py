"""The six import kinds, each declared once: its wire contract, its transform, its warehouse tables."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import catalog, demand_history, inventory, orders, purchase_orders, suppliers
from contracts.common import Contract
from service.warehouse import KindTables, Table
from transforms import Preparer
from transforms.catalog import prepare_catalog
from transforms.demand_history import prepare_demand_history
from transforms.inventory import prepare_inventory
from transforms.orders import prepare_orders
from transforms.purchase_orders import prepare_purchase_orders
from transforms.suppliers import prepare_suppliers


@dataclass(frozen=True)
class Kind:
    contract: Contract
    prepare: Preparer
    tables: KindTables

    @property
    def name(self) -> str:
        return self.contract.kind


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(catalog.CONTRACT, prepare_catalog, KindTables(Table("products", ("external_id",), auto_created=True))),
        Kind(inventory.CONTRACT, prepare_inventory, KindTables(Table("inventory_levels", ("sku_id", "location_id")))),
        Kind(
            suppliers.CONTRACT, prepare_suppliers, KindTables(Table("suppliers", ("external_id",), auto_created=True))
        ),
        Kind(
            purchase_orders.CONTRACT,
            prepare_purchase_orders,
            KindTables(
                Table("purchase_orders", ("external_po_number",)),
                Table("purchase_order_lines", ("external_po_number", "line_number")),
            ),
        ),
        Kind(
            orders.CONTRACT,
            prepare_orders,
            KindTables(
                Table("orders", ("external_order_id",)),
                Table("order_lines", ("external_order_id", "line_number")),
            ),
        ),
        Kind(
            demand_history.CONTRACT,
            prepare_demand_history,
            KindTables(Table("demand_history", ("sku_id", "location_id", "week_starting", "channel"))),
        ),
    )
}
