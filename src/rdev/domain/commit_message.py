"""Commit messages for builds: a subject from the prompt, the prompt as body, a Build-Id trailer.

The trailer ties a commit in the repository's history back to the build that made it (the CI
linker itself matches pipelines on the commit SHA), so it is always the last paragraph,
exactly ``Build-Id: <id>``.
"""

from __future__ import annotations

import re

SUBJECT_MAX = 72
BODY_MAX = 4000
_WS = re.compile(r"\s+")


def commit_message(prompt: str, build_id: str) -> str:
    """Subject (≤ 72 chars, first line of the prompt), prompt body, ``Build-Id`` trailer."""
    text = (prompt or "").strip()
    first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    subject = _shorten(_WS.sub(" ", first_line).strip()) or f"rdev build {build_id}"
    parts = [subject]
    body = text if _WS.sub(" ", text) != subject else ""
    if body:
        if len(body) > BODY_MAX:
            body = body[:BODY_MAX].rstrip() + "\n[...]"
        parts.append(body)
    parts.append(f"Build-Id: {build_id}")
    return "\n\n".join(parts) + "\n"


def _shorten(line: str) -> str:
    if len(line) <= SUBJECT_MAX:
        return line
    cut = line[: SUBJECT_MAX - 3]
    if " " in cut[SUBJECT_MAX // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" .,;:") + "..."
