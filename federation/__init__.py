"""Federation: the server-server API.

This package sits on top of the homeserver's services and stores: it imports them, they never
import it, and homeserver/server.py wires the two together (see `federation.wiring`).
"""
