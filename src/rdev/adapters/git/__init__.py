"""Git adapter: the GitOperations port on the git CLI, and build commit messages."""

from rdev.adapters.git.cli import GitCLI
from rdev.adapters.git.runner import GitAuthFailed, GitRunner
from rdev.domain.commit_message import commit_message

__all__ = ["GitAuthFailed", "GitCLI", "GitRunner", "commit_message"]
