"""Build the site: wrap every pages/*.html fragment in layout.html and write dist/.

Standard library only. A page may start with ``<!-- title: Something -->``; ``${site_title}``
in a page or the layout is replaced by the title from site.json (HTML-escaped).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent
_TITLE = re.compile(r"^\s*<!--\s*title:\s*(.*?)\s*-->\s*")


def build(root: Path = ROOT, out: Path | None = None) -> list[Path]:
    out = out or root / "dist"
    site = json.loads((root / "site.json").read_text(encoding="utf-8"))
    site_title = html.escape(site["title"])
    layout = Template((root / "layout.html").read_text(encoding="utf-8"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for page in sorted((root / "pages").glob("*.html")):
        text = page.read_text(encoding="utf-8")
        match = _TITLE.match(text)
        page_title = html.escape(match.group(1)) if match else page.stem
        body = Template(text[match.end() :] if match else text)
        content = body.safe_substitute(site_title=site_title)
        target = out / page.name
        target.write_text(
            layout.safe_substitute(site_title=site_title, page_title=page_title, content=content),
            encoding="utf-8",
        )
        written.append(target)
    if (root / "static").is_dir():
        shutil.copytree(root / "static", out / "static")
    return written


if __name__ == "__main__":
    pages = build()
    print(f"built {len(pages)} page(s) into dist/", file=sys.stderr)
