"""The HTTP integration API (Starlette served by uvicorn)."""
