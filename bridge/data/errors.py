"""The one error the data layer raises for bad annotation files."""


class DataError(ValueError):
    """An annotation file (or image folder) is missing or malformed; the message names the file and
    the problem."""
