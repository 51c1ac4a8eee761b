"""The dashboard: overview, pair and run pages.

Pure helpers (percentiles, windows, chart geometry, CSV cells, wording) live in their own
modules and import neither the ORM nor views; ``series`` and ``views`` are the I/O edge.
"""
