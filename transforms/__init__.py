"""Pure frame -> frame steps from validated rows to what the warehouse merges. No I/O.

One module per kind (transforms/inventory.py holds prepare_inventory); service/kinds.py puts each
kind's contract, transform and tables together.
"""

from collections.abc import Callable

from contracts.common import Validated
from transforms.common import JOB, Organization, Prepared

Preparer = Callable[[Validated, Organization], Prepared]

__all__ = ["JOB", "Organization", "Prepared", "Preparer"]
