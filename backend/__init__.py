"""The project's wiring and its HTTP edge: settings (every environment variable, read in
one place), urls, asgi, and what stands between the network and the API (proxies,
request bounds, logs, probes, metrics exposition, the database boundary off the event
loop, the embedded PostgreSQL of development). Nothing domain-specific."""
