"""Repository hosts: where a project's git repository lives (local bare repos, remote forges)."""
