"""synctest: a black-box Matrix conformance suite that drives any homeserver by URL."""
