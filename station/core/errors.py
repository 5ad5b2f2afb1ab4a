"""Errors the station reports to a person: each carries a one-line message that says what is wrong."""


class StationError(Exception):
    """Base of every error whose message is meant for the operator or engineer, not a traceback."""


class ImageError(StationError):
    """An image file that cannot be read, or whose content cannot be used."""


class DatasetError(StationError):
    """A training or test folder that does not have a usable layout."""


class RecipeError(StationError):
    """A recipe bundle that is missing, unreadable, tampered with or of the wrong schema."""


class EngineError(StationError):
    """An engine that cannot be fitted or run on the data it was given."""


class RegistrationError(StationError):
    """The part could not be found in the frame."""


class SourceError(StationError):
    """An image source (camera, video, folder) that cannot be opened or read."""
