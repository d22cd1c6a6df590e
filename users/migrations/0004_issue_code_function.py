"""Once created users_issue_code(); the rules now live in users/sql (see 0006)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("users", "0003_send_totals")]

    operations = []
