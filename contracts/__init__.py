"""The wire contract of each import kind: fields, types and the pandera schema. Pure: no I/O.

One module per kind (contracts/inventory.py holds CONTRACT and InventorySchema); service/kinds.py puts
each kind's contract, transform and tables together.
"""

from contracts.common import Contract

__all__ = ["Contract"]
