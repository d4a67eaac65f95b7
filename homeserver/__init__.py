"""A Matrix homeserver for HuiskamerGeklets."""

__version__ = "0.1.0"
