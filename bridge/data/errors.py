"""The one error the data layer raises for bad annotation files."""

from jaxloss.errors import InputError


class DataError(InputError):
    """An annotation file (or image folder) is missing or malformed; the message names the file and
    the problem."""
