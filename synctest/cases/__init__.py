"""Case modules, one per API area; importing this package registers every case."""

from synctest.cases import (  # noqa: F401
    account,
    account_data,
    accounts,
    capabilities,
    cors,
    devices,
    ephemeral,
    errors,
    filters,
    login,
    messages,
    profile,
    push_rules,
    relations,
    sync,
    versions,
    wellknown,
)
