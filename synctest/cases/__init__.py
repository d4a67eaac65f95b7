"""Case modules, one per API area; importing this package registers every case."""

from synctest.cases import accounts, cors, errors, login, versions, wellknown  # noqa: F401
