"""The privacy application service: a bot members DM for export, erasure, consent and sessions.

It speaks only the Matrix application service API, the client-server API and the (Synapse-shaped)
admin API over HTTP, so it runs beside this homeserver or Synapse; it imports nothing from the
homeserver's packages. See docs/privacy-service.md.
"""
