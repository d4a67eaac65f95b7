"""Accounts: registration, login, access tokens, devices, profiles, account data, filters."""
