"""The HTTP API: thin views that validate, authorise, write the PENDING intent and answer 202."""
