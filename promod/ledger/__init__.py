"""The cap ledger: caps, reservations, grants and the kill switch."""
