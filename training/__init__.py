"""Turns a dataset into a merged model directory that vLLM serves as it is."""
