"""Alerts: health history, channels, and when to notify (see docs/alerts.md).

rules.py and messages.py are pure; evaluate.py and delivery.py hold the ORM work;
channels.py is the SMTP/HTTP edge; tasks.py the thin Celery tasks.
"""
