"""The control plane: REST API, its auth and bodies, publish hooks, reconcile, the stream registry,
live previews and the dashboard page."""
