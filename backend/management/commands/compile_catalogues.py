from pathlib import Path

import polib
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Compile the translation catalogues (locale/*/LC_MESSAGES/*.po) to .mo files, "
        "without GNU gettext. Only catalogues newer than their .mo are compiled."
    )
    requires_system_checks = []  # a build step: it needs no database and no SMS settings

    def handle(self, *args: object, **options: object) -> None:
        for directory in settings.LOCALE_PATHS:
            for po_path in sorted(Path(directory).glob("*/LC_MESSAGES/*.po")):
                mo_path = po_path.with_suffix(".mo")
                if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
                    continue
                catalogue = polib.pofile(str(po_path))
                untranslated = catalogue.untranslated_entries()
                if untranslated:
                    self.stderr.write(f"{po_path}: {len(untranslated)} messages untranslated")
                catalogue.save_as_mofile(str(mo_path))
                self.stdout.write(f"compiled {mo_path.relative_to(settings.BASE_DIR)}")
