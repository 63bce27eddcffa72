"""ACL files: a ``.rag-acl.yaml`` (``groups: [a, b]``) gives the groups of its folder and everything below it.

The nearest one at or above a document's folder (within the source root) wins; documents with none take the
default groups. A file that exists but cannot be read fails closed: its documents are refused, never public.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from ingest.files import display_name

ACL_FILE = ".rag-acl.yaml"


class ACLError(Exception):
    """An ACL file exists but cannot be read; its folder must not fall back to the default groups."""


def groups_for(
    path: Path, root: Path, default: Sequence[str], _cache: dict[Path, tuple[str, ...]] | None = None
) -> tuple[str, ...]:
    """ACL groups of a file: the nearest ``.rag-acl.yaml`` (``groups: [a, b]``) at or above its folder, within root.

    Raises:
        ACLError: the nearest ACL file is unreadable or malformed (fail closed, never public).
    """
    cache = _cache if _cache is not None else {}
    folder = path.parent
    chain: list[Path] = []
    groups: tuple[str, ...] | None = None
    while True:
        if folder in cache:
            groups = cache[folder]
            break
        chain.append(folder)
        acl = folder / ACL_FILE
        if acl.is_file():
            groups = _read_acl(acl)
            break
        if folder == root or root not in folder.parents:
            groups = tuple(default)
            break
        folder = folder.parent
    for f in chain:
        cache[f] = groups
    return groups


def _read_acl(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ACLError(f"unreadable ACL file {display_name(str(path))}: {e}") from e
    return parse_acl(text, display_name(str(path)))


def parse_acl(text: str, where: str) -> tuple[str, ...]:
    """Groups from the text of an ACL file (``groups: [a, b]``); ``where`` names it in errors.

    Raises:
        ACLError: not YAML, or no non-empty list of group names.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ACLError(f"unreadable ACL file {where}: {e}") from e
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
        raise ACLError(f"ACL file {where} must contain 'groups: [name, ...]' with at least one group")
    return tuple(sorted({g.strip() for g in groups}))
