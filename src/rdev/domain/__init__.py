"""The pure centre: models, the build state machine and domain errors. No I/O."""
