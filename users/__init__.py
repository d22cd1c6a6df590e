"""The domain: people and their invite codes, one-time codes and their limits, refresh
tokens, the delivery log; the use cases (`services`), the rules that must be atomic (in
SQL, `sql`), the SMS backends and the admin. It imports nothing of the project's."""
