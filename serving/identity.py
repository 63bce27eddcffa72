"""Who is calling, as the groups used to filter retrieval.

Placeholder until API keys and Open WebUI's signed user token are supported: every caller is
anonymous and sees only ``public`` documents. Routes depend on :func:`caller_groups`, so the
auth work replaces this function and nothing else.
"""

from __future__ import annotations

from fastapi import Request

from rag.types import PUBLIC_GROUP, Filter


def caller_groups(request: Request) -> tuple[str, ...]:
    """The ACL groups of the caller (anonymous: only the public group)."""
    return (PUBLIC_GROUP,)


def acl_filter(groups: tuple[str, ...]) -> Filter:
    """The retrieval filter that keeps a caller inside its groups."""
    return Filter(groups=groups)
