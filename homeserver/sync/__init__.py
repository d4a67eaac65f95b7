"""/sync and the notifier that wakes it."""
