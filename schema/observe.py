"""Hands each GraphQL operation's name and top-level error codes to the request's log.

backend/edge.py then writes them on the access line and times the request by the
operation's name (backend/metrics.py). Listed before ErrorPolicy in the schema's
extensions, so this runs after it and sees the codes it gave.
"""

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from backend import logs


class ObserveOperation(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        request = logs.current()
        context = self.execution_context
        try:
            yield
        except Exception:
            # A document that does not parse is raised through the extensions and
            # answered after them, with no code.
            if request is not None:
                request.graphql = True
                request.operation = context.operation_name  # the one asked for, if any
                request.outcomes.append("GRAPHQL_PARSE_FAILED")
            raise
        if request is None:
            return
        request.graphql = True
        request.operation = context.operation_name
        errors = context.result.errors if context.result is not None else None
        for error in errors or ():
            code = (error.extensions or {}).get("code")
            if not code:
                # graphql-core's own errors carry no code; these are Apollo's names.
                parsed = context.graphql_document is not None
                code = "GRAPHQL_VALIDATION_FAILED" if parsed else "GRAPHQL_PARSE_FAILED"
            request.outcomes.append(str(code))
