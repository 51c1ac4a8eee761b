"""Protection: is the backup a backup? Posture checks of both buckets' settings.

rules.py (pure), posture.py (reads S3 through replication.s3's clients), store.py (ORM),
health.py (findings for the pair's health), views.py and admin.py (entry points).
"""
