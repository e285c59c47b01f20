"""What `af up` prepares for users from the project's files: the examples repository that every
notebook server pulls (facility.examples) and the user guide as HTML for the hub's page
(hub_config/user_guide.py)."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from af.components import PROJECT_ROOT
from facility import examples

EXAMPLES = PROJECT_ROOT / "notebooks"
USER_GUIDE = PROJECT_ROOT / "docs" / "user-guide.md"
GUIDE_FILE = "user-guide.html"  # hub_config.user_guide.GUIDE_FILE: the hub reads it there


def example_notebooks(folder: Path = EXAMPLES) -> list[Path]:
    """The facility's example notebooks: every notebook of the project's notebooks/ folder."""
    return sorted(folder.glob("*.ipynb"))


def publish_examples(state: Path, folder: Path = EXAMPLES) -> bool:
    """Bring the examples repository of the facility in `state` up to `folder`; True if it changed."""
    return examples.publish(examples.repo_path(state), example_notebooks(folder))


def _unlink_repository_files(tokens: list[Token]) -> None:
    """Links to other files of the repository (../README.md) lead nowhere in the hub: keep their text only."""
    for token in tokens:
        if token.children:
            token.children = [
                child
                for child in token.children
                if not (child.type in ("link_open", "link_close") and _is_repository_link(child, token.children))
            ]


def _is_repository_link(token: Token, siblings: list[Token]) -> bool:
    if token.type == "link_close":  # its link_open is the nearest one before it
        opening = [t for t in siblings[: siblings.index(token)] if t.type == "link_open"]
        token = opening[-1]
    href = str(token.attrGet("href") or "")
    return "://" not in href and not href.startswith("#")


def render_user_guide(state: Path, source: Path = USER_GUIDE) -> Path:
    """Write the user guide as an HTML fragment (no raw HTML from the markdown) into `state`."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(source.read_text())
    _unlink_repository_files(tokens)
    html = md.renderer.render(tokens, md.options, {})
    target = Path(state) / GUIDE_FILE
    target.write_text(html)
    return target
