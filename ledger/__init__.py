"""The domain core: posting, intents, wallets, identity. No Flask or Celery here.

Every function takes a SQLAlchemy Session first and never commits: the caller owns the transaction.
"""
