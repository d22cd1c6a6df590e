"""Executing an operation: graphql-core's, with a short cut for what only reads.

A `me` with 50 referrals is about 250 fields, nearly all of them an attribute of an
object the resolvers already built: a string, a date, a list of edges. For each,
graphql-core builds a resolve info, collects arguments, calls Strawberry's resolver
and completes the value: most of the difference between `me` and a plain Django view
doing the same reads (`make bench`).

A field is *plain* when it has no arguments, no resolver of its own (Strawberry's
default one only reads the attribute) and a type that is a scalar, an enum, a list of
plain values or an object type whose selected fields are all plain. Such a field is
read and serialised here by a plan made once for it, with the fields collected by
graphql-core itself (so aliases, fragments and @skip/@include mean what they always mean). Any
null, a value that does not serialise, `__typename` on an abstract type, or a field
with a resolver sends the whole field down graphql-core's path, so errors and nulls
are reported exactly as before. With schema extensions that hook into resolving
(middleware), nothing is short cut.
"""

from collections.abc import Callable
from contextlib import suppress
from functools import cache
from typing import Any

from graphql import (
    ExecutionContext as GraphQLExecutionContext,
)
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

DEFINITION = "strawberry-definition"  # where Strawberry keeps a field's definition

type Reader = Callable[[Any], Any]


class _NotPlain(Exception):
    """This value needs graphql-core's full path."""


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
    read, attribute = definition.default_resolver, definition.python_name
    return lambda source: read(source, attribute)


class ExecutionContext(GraphQLExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("operation_extensions", None)  # Strawberry passes them; nothing here reads them
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._short_cuts = manager is None or not manager.middlewares

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_nodes: list[FieldNode],
        path: Path,
    ) -> Any:
        if self._short_cuts:
            reader = _reader(parent_type, field_nodes[0].name.value)
            if reader is not None:
                field_type = parent_type.fields[field_nodes[0].name.value].type
                # Anything unusual, an error included, is left to graphql-core's path,
                # which reports it as it always has.
                with suppress(Exception):
                    return self._plan(field_type, field_nodes)(reader(source))
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
                serialized = None if value is None else serialize(value)
                if serialized is None or serialized is Undefined:
                    raise _NotPlain
                return serialized

            return leaf
        if isinstance(type_, GraphQLList):
            item = self._plan(type_.of_type, field_nodes)

            def items(value: Any) -> Any:
                if value is None or isinstance(value, str | bytes | dict):
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
