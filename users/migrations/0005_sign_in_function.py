"""Once created users_sign_in(); the rules now live in users/sql (see 0006)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("users", "0004_issue_code_function"), ("users", "0002_refresh_tokens")]

    operations = []
