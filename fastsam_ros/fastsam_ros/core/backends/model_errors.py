"""The one error every model runtime raises when weights cannot be turned into a network."""


class ModelLoadError(RuntimeError):
    """The model could not be found, read, exported or placed on the requested device."""
