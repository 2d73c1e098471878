"""Serving: the vLLM engine launcher, the FastAPI gateway, local serving, model swaps, bulk runs.
Never trains and never parses raw files itself (preprocessing does)."""
