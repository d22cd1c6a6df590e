"""Executing an operation: Strawberry's, with a short cut for what only reads.

A `me` with 50 referrals is about 250 fields, nearly all of them an attribute of an
object the resolvers already built: a string, a date, a list of edges. For each,
graphql-core builds a resolve info, collects arguments, calls Strawberry's resolver
and completes the value: most of the difference between `me` and a plain Django view
doing the same reads (`make bench`).

A field is *plain* when it has no arguments, no resolver of its own (Strawberry's
default one only reads the attribute) and a type that is a scalar, an enum, a list of
plain values or an object type whose selected fields are all plain. Such a field is
read and serialised here by a plan made once for it, with the fields collected by
graphql-core itself (so aliases, fragments and @skip/@include mean what they always
mean). Any null, a value that does not serialise or cannot be read, `__typename` on an
abstract type, or a field with a resolver sends the whole field down graphql-core's
path, so errors and nulls are reported exactly as before. With schema extensions that
hook into resolving (middleware), nothing is short cut.

The short cut is plugged in through Strawberry's `execution_context_class` and rides
private parts of graphql-core 3.2 (`execute_field`'s arguments, `collect_subfields`,
`middleware_manager`) and Strawberry's key for a field's definition. So it is switched
on only when GRAPHQL_SHORT_CUT is (the default) and the installed graphql-core is one
it was written for (SUPPORTED); otherwise the schema runs on Strawberry's own execution
context, and one log line says why. GRAPHQL_SHORT_CUT is read again at each operation,
so turning it off takes effect at once (the API's tests run both ways).

Only the short cut's own signal, `_NotPlain`, is caught: a bug in the plans propagates
and is reported like any other. The two steps that run the schema's code, reading an
attribute and serialising a scalar, turn what they raise into `_NotPlain`, so that
graphql-core reports it at its own path.
"""

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

import graphql
from django.conf import settings
from graphql import ExecutionContext as GraphQLExecutionContext
from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    Undefined,
)
from graphql.pyutils import Path
from strawberry.resolvers import is_default_resolver
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

logger = logging.getLogger(__name__)

# graphql-core releases (major, minor) whose execution the short cut was written for.
SUPPORTED = {(3, 2)}
DEFINITION = "strawberry-definition"  # where Strawberry keeps a field's definition

type Reader = Callable[[Any], Any]


class _NotPlain(Exception):
    """This value needs graphql-core's full path."""


def unsupported_graphql_core() -> str | None:
    """Why the installed graphql-core cannot run the short cut, or None if it can."""
    installed = (graphql.version_info.major, graphql.version_info.minor)
    if installed in SUPPORTED:
        return None
    written_for = ", ".join(f"{major}.{minor}" for major, minor in sorted(SUPPORTED))
    return f"it was written for graphql-core {written_for}, and {graphql.version} is installed"


def execution_context_class() -> type[GraphQLExecutionContext] | None:
    """What the schema executes with: the short cut's context, or None for Strawberry's
    own when GRAPHQL_SHORT_CUT is off or graphql-core is not one it was written for
    (then logged once, as the schema is built)."""
    if not settings.GRAPHQL_SHORT_CUT:
        return None
    refusal = unsupported_graphql_core()
    if refusal is not None:
        logger.warning("GRAPHQL_SHORT_CUT: the execution short cut stays off: %s", refusal)
        return None
    return ExecutionContext


@cache
def _reader(parent_type: GraphQLObjectType, name: str) -> Reader | None:
    """How to read `parent_type.name` when it only reads an attribute, else None."""
    field = parent_type.fields.get(name)
    if field is None or field.args or field.resolve is None:
        return None
    if not is_default_resolver(field.resolve):
        return None
    definition = field.extensions.get(DEFINITION)
    if definition is None:
        return None
    resolve, attribute = definition.default_resolver, definition.python_name

    def read(source: Any) -> Any:
        try:
            return resolve(source, attribute)
        except Exception as error:  # the data's error: graphql-core reports it
            raise _NotPlain from error

    return read


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain fields completed by a plan."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._short_cuts = settings.GRAPHQL_SHORT_CUT and (
            manager is None or not manager.middlewares
        )

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_nodes: list[FieldNode],
        path: Path,
    ) -> Any:
        if self._short_cuts:
            name = field_nodes[0].name.value
            reader = _reader(parent_type, name)
            if reader is not None:
                try:
                    return self._plan(parent_type.fields[name].type, field_nodes)(reader(source))
                except _NotPlain:
                    pass  # graphql-core's path completes it, and reports what is wrong
        return super().execute_field(parent_type, source, field_nodes, path)

    def _plan(self, type_: GraphQLOutputType, field_nodes: list[FieldNode]) -> Reader:
        """How to complete a value of `type_` selected by `field_nodes`, as graphql-core
        would; _NotPlain when some part of it needs graphql-core's path. Made once for a
        field, so a list of fifty edges costs one plan and fifty dictionaries."""
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
            serialize = type_.serialize

            def leaf(value: Any) -> Any:
                if value is None:
                    raise _NotPlain
                try:
                    serialized = serialize(value)
                except Exception as error:  # the data's error: graphql-core reports it
                    raise _NotPlain from error
                if serialized is None or serialized is Undefined:
                    raise _NotPlain
                return serialized

            return leaf
        if isinstance(type_, GraphQLList):
            item = self._plan(type_.of_type, field_nodes)

            def items(value: Any) -> Any:
                if not isinstance(value, list | tuple):  # read once: no generators here
                    raise _NotPlain
                return [item(each) for each in value]

            return items
        if not isinstance(type_, GraphQLObjectType) or type_.is_type_of is not None:
            raise _NotPlain
        object_type = type_
        parts: list[tuple[str, Reader, Reader]] = []
        for response_name, nodes in self.collect_subfields(object_type, field_nodes).items():
            name = nodes[0].name.value
            if name == "__typename":
                parts.append((response_name, _typename, lambda _: object_type.name))
                continue
            reader = _reader(object_type, name)
            if reader is None:
                raise _NotPlain
            parts.append((response_name, reader, self._plan(object_type.fields[name].type, nodes)))

        def fields(value: Any) -> Any:
            if value is None:
                raise _NotPlain
            return {name: complete(read(value)) for name, read, complete in parts}

        return fields


def _typename(value: Any) -> Any:
    return value
