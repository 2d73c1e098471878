"""Load tests (Locust against the gateway) and the side-by-side benchmark of the serving paths."""
