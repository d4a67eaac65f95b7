"""Pure event core: room versions, the event model, canonical JSON, hashes, signatures,
redaction, validation, building and serialisation of events."""
