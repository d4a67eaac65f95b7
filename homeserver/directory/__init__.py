"""Room aliases, the public room list, the user directory and search."""
