"""Entry point: ``python -m service``."""

from service.app import main

main()
