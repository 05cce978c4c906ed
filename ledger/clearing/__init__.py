"""Cross-organisation money: obligations between clearing wallets, netting, settlement batches."""
