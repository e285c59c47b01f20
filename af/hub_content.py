"""What `af up` prepares for users from the project's files: the examples repository that every
notebook server pulls (facility.examples) and the user guide as HTML for the hub's page
(hub_config/user_guide.py)."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

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


def render_user_guide(state: Path, source: Path = USER_GUIDE) -> Path:
    """Write the user guide as an HTML fragment (no raw HTML from the markdown) into `state`."""
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(source.read_text())
    target = Path(state) / GUIDE_FILE
    target.write_text(html)
    return target
