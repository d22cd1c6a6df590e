"""What a GraphQL document may cost before it runs: depth, aliases, repeated fields.

Validation runs on the event loop, and graphql-core's OverlappingFieldsCanBeMerged
rule compares every pair of fields with one response name in a selection set: a
5 KB document of 500 `me { id }` took 2 s of CPU. So before validating, one linear
pass over the document refuses any selection set (fragments inlined) that selects a
response name more than MAX_SAME_FIELD times; that bounds the pairs the rule can
compare. Validation results are cached by the document with its operation names
replaced, so renaming an operation does not make an old document new.
"""

from collections import Counter
from collections.abc import Iterator
from functools import cache, lru_cache

from django.conf import settings
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    validate,
)
from graphql.language import Visitor, visit
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension

MAX_SAME_FIELD = 20


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def repeated_field(document: DocumentNode) -> GraphQLError | None:
    """The first selection set that selects one response name too often, as an error."""
    fragments = _fragments(document)
    fragment_names: dict[str, Counter[str]] = {}

    def names(selection_set: SelectionSetNode, inside: frozenset[str]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                counts[(selection.alias or selection.name).value] += 1
            elif isinstance(selection, InlineFragmentNode):
                counts.update(names(selection.selection_set, inside))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in inside or name not in fragments:
                    continue  # a cycle or an unknown fragment: validation reports it
                if name not in fragment_names:
                    fragment_names[name] = names(fragments[name].selection_set, inside | {name})
                counts.update(fragment_names[name])
        return counts

    found: list[GraphQLError] = []

    class Check(Visitor):
        def enter_selection_set(self, node: SelectionSetNode, *_: object) -> object:
            if found:
                return Visitor.BREAK
            name, count = next(iter(names(node, frozenset()).most_common(1)), ("", 0))
            if count > MAX_SAME_FIELD:
                found.append(
                    GraphQLError(
                        f"'{name}' is selected {count} times in one selection set; "
                        f"at most {MAX_SAME_FIELD} are allowed.",
                        node,
                    )
                )
                return Visitor.BREAK
            return None

    visit(document, Check())
    return found[0] if found else None


def _anonymised(document: DocumentNode) -> DocumentNode:
    """The document with operation names replaced by their order of first appearance.

    Validation does not depend on the names themselves, only on which are equal and
    which are missing, and that is kept.
    """
    first_seen: dict[str, str] = {}
    definitions = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
            name = first_seen.setdefault(definition.name.value, f"Operation{len(first_seen)}")
            definition = OperationDefinitionNode(
                operation=definition.operation,
                name=NameNode(value=name, loc=definition.name.loc),
                variable_definitions=definition.variable_definitions,
                directives=definition.directives,
                selection_set=definition.selection_set,
                loc=definition.loc,
            )
        definitions.append(definition)
    return DocumentNode(definitions=tuple(definitions), loc=document.loc)


@cache
def _rules(
    max_depth: int, max_aliases: int, introspection: bool
) -> tuple[type[ASTValidationRule], ...]:
    """The extra rules, made once per setting so the validation cache can key on them."""
    rules = (
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    )
    return tuple(rules) if introspection else (*rules, NoSchemaIntrospectionCustomRule)


@lru_cache(maxsize=256)
def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    return validate(schema, document, rules)


class GraphQLLimits(SchemaExtension):
    """Depth and aliases limits, repeated fields refused cheaply, validation cached."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        error = repeated_field(document)
        if error is None:
            rules = (
                *context.validation_rules,
                *_rules(
                    settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES, settings.GRAPHIQL
                ),
            )
            error_list = _validate(context.schema._schema, _anonymised(document), rules)
        else:
            error_list = [error]
        context.pre_execution_errors = error_list
        yield
