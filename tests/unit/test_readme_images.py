"""Every image the README shows is a file in the repository (the console's screenshots in docs/ are
remade by the browser tests with VAULTCRAFT_SCREENSHOTS=docs, and a renamed one would leave a hole)."""

from __future__ import annotations

import re

from settings import PROJECT_ROOT


def test_every_image_the_readme_shows_exists():
    readme = (PROJECT_ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    assert images, "the README shows no image"
    missing = [path for path in images if not (PROJECT_ROOT / path).is_file()]
    assert missing == []
