"""The FastAPI gateway: the classify_paper contract over a pool of vLLM engines."""
