"""The GraphQL API: Strawberry types, queries, mutations and the schema object, with the
one mapping from domain errors to what clients see. Resolvers parse, call one use case
of `users`, and return."""
