"""The one exception type the pipeline raises for problems a user can fix."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message names the file (and line, where known), what was expected, and what to do.
    """
