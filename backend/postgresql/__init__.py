"""Django's PostgreSQL backend, with a pool that gets over a database restart at once."""
