"""Settings for the dispatcher's subprocess tests (tests/test_dispatch_kill.py): short leases, small batches."""

from tertulia.settings import *  # noqa: F403

TERTULIA_DELIVERY_LEASE_SECONDS = 2.0
TERTULIA_DISPATCH_BATCH_SIZE = 10
