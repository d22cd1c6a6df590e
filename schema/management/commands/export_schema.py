from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from schema.schema import schema


class Command(BaseCommand):
    help = "Write the GraphQL schema in SDL to schema.graphql (or --output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=str(Path(settings.BASE_DIR) / "schema.graphql"))

    def handle(self, *args: object, output: str, **options: object) -> None:
        Path(output).write_text(schema.as_str() + "\n")
        self.stdout.write(f"wrote {output}")
