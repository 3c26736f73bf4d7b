"""The worker daemon: protocol client, build executor, claim/heartbeat loop."""
