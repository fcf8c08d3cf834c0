"""The web console under ``/console``: server-rendered pages over the service layer,
signed in with an access key, scoped to its account exactly like the API."""
