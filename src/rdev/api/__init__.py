"""The HTTP API: FastAPI routers, auth, error mapping. Thin: parse, call a service, serialize."""
