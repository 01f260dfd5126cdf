from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PostureConfig(AppConfig):
    name = "posture"
    verbose_name = "Posture"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .roles import ensure_roles

        # Permissions exist only after migrate, so roles are synced then, not in a migration.
        post_migrate.connect(ensure_roles, sender=self)
