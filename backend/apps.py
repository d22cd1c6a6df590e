from django.apps import AppConfig


class BackendConfig(AppConfig):
    """The project's wiring, as an app only so that its checks are registered."""

    name = "backend"
    verbose_name = "Backend"

    def ready(self) -> None:
        from backend import checks  # noqa: F401 (registers the database check)
