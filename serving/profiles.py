"""RAG profiles: one model on /v1/models per collection × chat backend chain.

The top-level settings are the default profile (``server.model_name``); each entry of
``server.profiles`` overrides the collection, the chat URL, the fallbacks and the public-endpoint
policy, and keeps everything else. A request's ``model`` picks the profile.
"""

from __future__ import annotations

from collections.abc import Mapping

from rag.config import ProfileSettings, Settings
from rag.errors import NotFound
from rag.pipeline import Pipeline


def profile_settings(settings: Settings, profile: ProfileSettings) -> Settings:
    """The settings of one profile: the top level with the profile's fields put in."""
    store = settings.store.model_copy(update={"collection": profile.collection}) if profile.collection else None
    chat = settings.chat.model_copy(update={"url": profile.chat_url}) if profile.chat_url else None
    chain: dict[str, object] = {}
    if profile.fallback_urls is not None:
        chain["fallback_urls"] = list(profile.fallback_urls)
    if profile.restricted_to_public is not None:
        chain["restricted_to_public"] = profile.restricted_to_public
    update: dict[str, object] = {
        "server": settings.server.model_copy(update={"model_name": profile.name, "profiles": []}),
        "chain": settings.chain.model_copy(update=chain),
    }
    if store is not None:
        update["store"] = store
    if chat is not None:
        update["chat"] = chat
    return settings.model_copy(update=update)


def pick(pipelines: Mapping[str, Pipeline], model: str) -> Pipeline:
    """The pipeline of the profile named ``model``, or 404 naming the ones there are."""
    found = pipelines.get(model)
    if found is None:
        known = ", ".join(f"'{name}'" for name in pipelines)
        raise NotFound(
            f"the model '{model}' does not exist; this service serves {known}", param="model", code="model_not_found"
        )
    return found
