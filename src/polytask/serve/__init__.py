"""HTTP serving of a multi-task checkpoint (needs the ``serve`` extra: fastapi, uvicorn)."""
