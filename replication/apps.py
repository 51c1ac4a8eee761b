from django.apps import AppConfig


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Backup replication"

    def ready(self) -> None:
        from replication import checks  # noqa: F401  (registers the system checks)
