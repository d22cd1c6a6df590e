"""What a GraphQL document may cost before it runs: depth, aliases, repeated fields.

Validation runs on the event loop, and graphql-core's OverlappingFieldsCanBeMerged
rule compares every pair of fields with one response name in a selection set: a
5 KB document of 500 `me { id }` took 2 s of CPU. So before validating, one linear
pass over the document refuses any selection set (fragments inlined) that selects a
response name more than MAX_SAME_FIELD times; that bounds the pairs the rule can
compare. Validation results are cached by the document with its operation names
replaced, so renaming an operation does not make an old document new.

Every cache here is keyed by a client's document, so each is bounded by the bytes it
holds, not by its number of entries: a document's syntax tree costs about TOKEN_BYTES
per token (about 1 MB for 2,000 tokens in 16 KB of text), its text its length. A
document estimated at more than MAX_CACHED_DOCUMENT is not cached at all, and each
cache holds at most CACHE_BYTES; past that the least recently used entries go.
"""

from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterator
from functools import cache

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
    Token,
    parse,
    validate,
)
from graphql.language import Visitor, visit
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension

MAX_SAME_FIELD = 20

# Measured with tracemalloc on graphql-core 3.2: 400 to 600 bytes per token.
TOKEN_BYTES = 600
MAX_CACHED_DOCUMENT = 512 * 1024  # about 850 tokens
CACHE_BYTES = 8 * 1024 * 1024  # each of the three caches below


class SizedCache[K: Hashable, V]:
    """Least recently used entries go first, so that the bytes held stay under `max_bytes`;
    an entry of more than `max_entry_bytes` is never kept."""

    def __init__(self, *, max_bytes: int, max_entry_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, cost: int) -> None:
        if cost > self.max_entry_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.bytes -= previous[1]
        while self._entries and self.bytes + cost > self.max_bytes:
            _key, (_value, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted
        self._entries[key] = (value, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


def document_bytes(document: DocumentNode) -> int:
    """About what `document` holds in memory: its text and its syntax tree."""
    if document.loc is None:
        return MAX_CACHED_DOCUMENT + 1  # nothing to measure it by: not cached
    tokens = 0
    token: Token | None = document.loc.start_token
    while token is not None:
        tokens += 1
        token = token.next
    return len(document.loc.source.body) + tokens * TOKEN_BYTES


def _sized_cache() -> SizedCache:  # type: ignore[type-arg]
    return SizedCache(max_bytes=CACHE_BYTES, max_entry_bytes=MAX_CACHED_DOCUMENT)


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


type Rules = tuple[type[ASTValidationRule], ...]

# The documents of recently seen query texts (parse options included); the validation
# errors of recently seen query texts; and, behind those, the validation errors of
# recently seen documents with their operation names replaced.
_documents: SizedCache[tuple[str, tuple[tuple[str, object], ...]], DocumentNode] = _sized_cache()
_checked: SizedCache[tuple[str, Rules], list[GraphQLError]] = _sized_cache()
_validated: SizedCache[tuple[GraphQLSchema, DocumentNode, Rules], list[GraphQLError]] = (
    _sized_cache()
)


class _CachedValidation:
    """graphql-core's validate, cached in `_validated` by the document with its operation
    names replaced (with functools' `cache_clear`, as the cache it replaced had)."""

    def __call__(
        self, schema: GraphQLSchema, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        anonymised = _anonymised(document)
        key = (schema, anonymised, rules)
        errors = _validated.get(key)
        if errors is None:
            errors = validate(schema, anonymised, rules)
            _validated.put(key, errors, document_bytes(document))
        return errors

    def cache_clear(self) -> None:
        _validated.clear()


_validate = _CachedValidation()


def check(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: Rules,
    text: str | None = None,
) -> list[GraphQLError]:
    """The errors of `document`: the repeated-field check, then (cached) validation."""
    key = (text, rules) if text is not None else None
    errors = _checked.get(key) if key is not None else None
    if errors is None:
        error = repeated_field(document)
        errors = [error] if error is not None else _validate(schema, document, rules)
        if key is not None:
            _checked.put(key, errors, document_bytes(document))
    return errors


class CachedParser(SchemaExtension):
    """strawberry's ParserCache, bounded by bytes (the module docstring) instead of by
    entries: its 256 entries of 2,000 tokens each held 300 MB."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            options = context.parse_options
            key = (context.query, tuple(sorted(options.items())))
            document = _documents.get(key)
            if document is None:
                document = parse(context.query, **options)
                _documents.put(key, document, document_bytes(document))
            context.graphql_document = document
        yield


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
