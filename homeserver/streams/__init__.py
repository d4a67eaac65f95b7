"""The stream layer: what services publish after a commit and what consumers read.

- `tokens`: stream positions, sync tokens and pagination tokens.
- `notifier`: wakes waiting long polls when a position moves.
- `sources`: how /sync (and later sliding sync) reads each stream.
- `updates` and `bus`: committed changes, published once by the service that made them and
  fanned out in order to the consumers `homeserver/server.py` subscribes.
- `stages`: ordered background consumers of the events stream that resume from a persisted
  position after a crash (push evaluation, search indexing, outbound hand-off).
"""
