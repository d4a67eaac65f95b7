"""The Application Service API inside the homeserver: registrations, namespaces, queries, ping, transactions."""
