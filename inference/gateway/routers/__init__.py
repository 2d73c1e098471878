"""The gateway's routers, one per resource: `ops` (open: health, readiness, metrics),
`classify` (API key: the classify_paper contract and the model), `admin` (API key, only
included when GATEWAY_ADMIN_ENABLED: model swaps)."""
