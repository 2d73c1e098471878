"""The model registry: immutable, checksummed model versions in S3 (see `model_registry.s3`).

Training publishes merged model directories here; the engine's init container fetches them.
It sits beside `model_contract` so that neither training nor inference imports the other.
"""
