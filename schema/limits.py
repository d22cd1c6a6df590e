"""What a GraphQL document may cost before it runs: depth, aliases, repeated fields.

Validation runs on the event loop, and graphql-core's OverlappingFieldsCanBeMerged
rule compares every pair of fields with one response name in a selection set: a
5 KB document of 500 `me { id }` took 2 s of CPU. So before validating, one linear
pass over the document refuses any selection set (fragments inlined) that selects a
response name more than MAX_SAME_FIELD times; that bounds the pairs the rule can
compare. Validation results are cached by the document with its operation names
replaced, so renaming an operation does not make an old document new.
"""

from collections import Counter, OrderedDict
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


class _Checked:
    """The validation errors of recently seen query texts: most requests repeat one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.errors: OrderedDict[
            tuple[str, tuple[type[ASTValidationRule], ...]], list[GraphQLError]
        ] = OrderedDict()

    def get(
        self, key: tuple[str, tuple[type[ASTValidationRule], ...]]
    ) -> list[GraphQLError] | None:
        errors = self.errors.get(key)
        if errors is not None:
            self.errors.move_to_end(key)
        return errors

    def put(
        self, key: tuple[str, tuple[type[ASTValidationRule], ...]], errors: list[GraphQLError]
    ) -> None:
        self.errors[key] = errors
        if len(self.errors) > self.size:
            self.errors.popitem(last=False)


_checked = _Checked(256)


def check(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    text: str | None = None,
) -> list[GraphQLError]:
    """The errors of `document`: the repeated-field check, then (cached) validation."""
    key = (text, rules) if text is not None else None
    errors = _checked.get(key) if key is not None else None
    if errors is None:
        error = repeated_field(document)
        errors = [error] if error is not None else _validate(schema, _anonymised(document), rules)
        if key is not None:
            _checked.put(key, errors)
    return errors


class GraphQLLimits(SchemaExtension):
    """Depth and aliases limits, repeated fields refused cheaply, validation cached.

    Two caches: by the query text (a dictionary lookup for the documents clients
    send again and again) and, behind it, by the document with its operation names
    replaced (so a new name on an old document is not validated again).
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        rules = (
            *context.validation_rules,
            *_rules(settings.GRAPHQL_MAX_DEPTH, settings.GRAPHQL_MAX_ALIASES, settings.GRAPHIQL),
        )
        context.pre_execution_errors = check(
            context.schema._schema, context.graphql_document, rules, context.query
        )
        yield
