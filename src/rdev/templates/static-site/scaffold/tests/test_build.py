"""The build writes one HTML file per page, wrapped in the layout, plus the static assets."""

from __future__ import annotations

import html
import json
import tempfile
import unittest
from pathlib import Path

from build import ROOT, build


class BuildTest(unittest.TestCase):
    def test_every_page_is_built_with_the_site_title(self) -> None:
        title = json.loads((ROOT / "site.json").read_text(encoding="utf-8"))["title"]
        with tempfile.TemporaryDirectory() as tmp:
            written = build(out=Path(tmp) / "dist")
            names = {p.name for p in written}
            self.assertEqual(names, {p.name for p in (ROOT / "pages").glob("*.html")})
            index = (Path(tmp) / "dist" / "index.html").read_text(encoding="utf-8")
            self.assertIn("<!doctype html>", index)
            self.assertNotIn("${", index)
            self.assertTrue((Path(tmp) / "dist" / "static" / "style.css").is_file())
            self.assertIn(html.escape(title), index)


if __name__ == "__main__":
    unittest.main()
