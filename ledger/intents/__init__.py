"""Intake and the rules of each kind of intent: transfers, bulk, peer-to-peer requests."""
