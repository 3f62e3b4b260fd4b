"""Errors a user can fix, with messages that say how."""


class DataError(RuntimeError):
    """Bad or missing input data; the message names the file and the fix."""


class DataNotFoundError(DataError):
    """A data set that is not where the loader looked."""

    def __init__(self, task: str, looked: list[str], fetch_hint: str):
        places = "\n  ".join(looked)
        super().__init__(f"no {task} data found. Looked in:\n  {places}\n{fetch_hint}")
