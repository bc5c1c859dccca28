"""The one exception type that means "the user asked for something we cannot do".

The command line prints a :class:`ChainlabError` as a single line on stderr (no
traceback) and exits non-zero; anything else is a bug and keeps its traceback.
"""


class ChainlabError(Exception):
    """A problem with the user's request, explained in one line."""


class ExperimentFailed(ChainlabError):
    """An experiment raised; its partial output stays in the workdir."""


class RunInterrupted(ChainlabError):
    """SIGINT or SIGTERM stopped a run; it can be continued from its workdir.

    Attributes:
      workdir: the run's folder, to resume.
    """

    def __init__(self, message: str, workdir):
        super().__init__(message)
        self.workdir = workdir
