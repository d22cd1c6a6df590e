"""Sessions (a refresh-token family: one sign-in on one device) and the sign-in history.

Each refresh token already stored becomes a session of its own, ended if the token was
revoked: the old tokens do not say which sign-in they descend from. users_sign_in takes
the device and network now, so its old signature is dropped (users/sql installs the new
one after migrate)."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models

BACKFILL = """
DO $$
DECLARE
    r record;
    v_session bigint;
BEGIN
    FOR r IN SELECT id, user_id, created_at, revoked_at FROM users_refreshtoken
        WHERE session_id IS NULL ORDER BY id
    LOOP
        INSERT INTO users_session (user_id, created_at, last_used_at, ended_at, device, network)
        VALUES (r.user_id, r.created_at, r.created_at, r.revoked_at, 'Unknown', '')
        RETURNING id INTO v_session;
        UPDATE users_refreshtoken SET session_id = v_session WHERE id = r.id;
    END LOOP;
END
$$;
SET CONSTRAINTS ALL IMMEDIATE;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0008_deliveries'),
    ]

    operations = [
        migrations.RunSQL(
            """
            DROP FUNCTION IF EXISTS users_sign_in(
                text, text, integer, integer, integer, integer, integer, text[], text, text,
                bigint
            );
            """,
            migrations.RunSQL.noop,
        ),
        migrations.CreateModel(
            name='Session',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ('last_used_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('device', models.CharField(blank=True, db_default='', max_length=100)),
                ('network', models.CharField(blank=True, db_default='', max_length=64)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='sessions', to='users.user')),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('ended_at__isnull', True)), fields=['user', '-last_used_at'], name='session_live_idx'), models.Index(fields=['last_used_at'], name='session_last_used_idx')],
            },
        ),
        migrations.CreateModel(
            name='SignInEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ('outcome', models.CharField(choices=[('signed_in', 'signed_in'), ('wrong_code', 'wrong_code'), ('expired', 'expired'), ('no_code', 'no_code'), ('too_many_attempts', 'too_many_attempts'), ('disabled', 'disabled')], max_length=20)),
                ('network', models.CharField(blank=True, db_default='', max_length=64)),
                ('device', models.CharField(blank=True, db_default='', max_length=100)),
                ('session', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='users.session')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='sign_in_events', to='users.user')),
            ],
            options={
                'indexes': [models.Index(fields=['user', '-at'], name='signin_user_idx'), models.Index(fields=['at'], name='signin_at_idx')],
            },
        ),
        migrations.AddField(
            model_name='refreshtoken',
            name='session',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='refresh_tokens', to='users.session'),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='refreshtoken',
            name='session',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='refresh_tokens', to='users.session'),
        ),
    ]
