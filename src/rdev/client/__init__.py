"""The API client side of the ``rdev`` command: login, builds, projects, workers."""
