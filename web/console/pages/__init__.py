"""The console's pages, one module per group; importing them registers their routes on the blueprint."""

from web.console.pages import activity, admin, clearing, overview, platform, reviews, transactions, wallets

__all__ = ["activity", "admin", "clearing", "overview", "platform", "reviews", "transactions", "wallets"]
