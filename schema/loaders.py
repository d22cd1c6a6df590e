"""Data loaders, made per request: the referral pages of every profile in a response
are read together, in the two queries of `selectors.referral_pages`."""

from collections import defaultdict
from dataclasses import dataclass, field

from strawberry.dataloader import DataLoader

from backend import database
from users import selectors
from users.models import User

type PageKey = tuple[int, selectors.PageRequest]


async def _load_referral_pages(keys: list[PageKey]) -> list[selectors.Page[User]]:
    """One read per distinct page request (usually one: every profile asks for the same)."""
    user_ids_by_request: dict[selectors.PageRequest, list[int]] = defaultdict(list)
    for user_id, request in keys:
        user_ids_by_request[request].append(user_id)
    pages: dict[PageKey, selectors.Page[User]] = {}
    for request, user_ids in user_ids_by_request.items():
        found = await database.run(selectors.referral_pages, user_ids=user_ids, request=request)
        pages.update(((user_id, request), page) for user_id, page in found.items())
    return [pages[key] for key in keys]


@dataclass
class Loaders:
    referral_pages: DataLoader[PageKey, selectors.Page[User]] = field(
        default_factory=lambda: DataLoader(load_fn=_load_referral_pages)
    )
