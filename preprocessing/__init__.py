"""Papers, datasets and prompts. Imports no torch: training and serving both build on it."""
