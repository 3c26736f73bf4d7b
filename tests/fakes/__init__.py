"""In-memory fakes of the storage ports: the same contract as the SQL adapters, no SQL."""
