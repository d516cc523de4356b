"""protoship: turn a buf module of .proto files into tested, installable Python packages."""

from protoship.errors import PipelineError

__all__ = ["PipelineError"]
