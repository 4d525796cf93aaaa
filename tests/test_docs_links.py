"""Every relative link in README.md and docs/**/*.md leads to a file that is in git, so that every
published number can be checked from a clone."""

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def tracked_files() -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files are tracked")
    return set(out.decode().split("\0")) - {""}


def documents(tracked: set[str]) -> list[str]:
    return sorted(p for p in tracked if p == "README.md" or (p.startswith("docs/") and p.endswith(".md")))


def relative_links(text: str) -> list[str]:
    """Link targets outside code blocks that are neither URLs, mail addresses nor in-page anchors."""
    targets = LINK.findall(FENCE.sub("", text))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_the_link_pattern_finds_links_and_images_but_not_code():
    text = 'See [a](docs/a.md#x), ![plot](p.png "title") and [web](https://x.org).\n```\n[b](b.md)\n```\n'
    assert relative_links(text) == ["docs/a.md#x", "p.png"]


def test_every_relative_link_in_the_docs_is_a_tracked_file():
    tracked = tracked_files()
    folders = {str(folder) for p in tracked for folder in Path(p).parents}
    broken = []
    docs = documents(tracked)
    assert "README.md" in docs and len(docs) > 3
    for doc in docs:
        for target in relative_links((ROOT / doc).read_text(encoding="utf-8")):
            path = os.path.normpath(Path(doc).parent / unquote(target.split("#")[0]))
            if path not in tracked and path not in folders:
                broken.append(f"{doc}: {target}")
    assert not broken, "links to files that are not in git:\n" + "\n".join(broken)
