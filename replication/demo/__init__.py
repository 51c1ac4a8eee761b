"""The local demo: three bucket pairs in the local S3, real traffic through the real Lambda
handler into the real ingest API, a reconcile, then a trickle of events (``make demo``)."""
