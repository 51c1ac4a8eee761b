from django.apps import AppConfig


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Backup replication"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from backupsite.postgres import use_compiled_timestamp_loader
        from replication import checks  # noqa: F401  (registers the system checks)

        connection_created.connect(use_compiled_timestamp_loader)
