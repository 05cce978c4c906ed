"""The settlement engine every intent kind goes through: claim, order, plan (pure), post."""
