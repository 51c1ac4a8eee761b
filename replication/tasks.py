"""Celery tasks: thin wrappers that take primary keys and hand the work to plain modules.

Every task is JSON-serialisable and safe to run twice.
"""
