"""`make bench`: the settlement engine against a per-transfer row-lock ledger, end to end, and bulk."""
