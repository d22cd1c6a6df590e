from django.core.management.base import BaseCommand

from users.services.housekeeping import purge_expired


class Command(BaseCommand):
    help = (
        "Delete expired one-time codes, rate-limit counters past their windows "
        "and expired refresh tokens."
    )

    def handle(self, *args: object, **options: object) -> None:
        deleted = purge_expired()
        self.stdout.write(", ".join(f"{name}: {count}" for name, count in deleted.items()))
