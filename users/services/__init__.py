"""The use cases of sign-in and invites, grouped by what they are about.

- `codes`: issue and deliver a one-time code (`send_code`, the one async use case),
  check it and sign in (`verify_code`);
- `invites`: activate another user's invite code (`activate_invite`);
- `tokens`: rotate and revoke refresh tokens (with the grace window and reuse detection);
- `sessions`: end one of a person's sessions, or all of them;
- `housekeeping`: delete what has expired.

Each public use case is a sync function with keyword-only arguments that returns a
dataclass or a model, runs in one transaction through `unit.use_case` and refuses
with `users.errors.DomainError`.
"""
